"""The REST service: FastAPI API, arq jobs through Redis, workers that run the agent, and a web page.

It knows HTTP, jobs, auth and storage; it calls ``sportlens.agent.loop.answer_question`` and never
re-implements the agent.
"""
