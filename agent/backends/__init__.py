"""Model backends behind one interface: an OpenAI-compatible HTTP server (vLLM) or transformers in-process."""
