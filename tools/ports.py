"""A free loopback port for the servers sportlens starts itself (vLLM, the embedded Redis, test and benchmark servers)."""
from __future__ import annotations

import random
import socket


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768 and up), so no outgoing connection takes it first."""
    for port in random.sample(range(20000, 32000), 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port between 20000 and 32000")
