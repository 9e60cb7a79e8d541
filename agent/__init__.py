"""The agent protocol, the loop and the model interface; nothing about HTTP or Redis."""
