"""Memory of `sportlens serve` while clients send 150 MiB bodies it must refuse (issue 18's probe).

For each case a client sends a 150 MiB request body in 64 KiB pieces, stopping as soon as the server answers or
closes; the server process's peak resident memory (VmHWM in /proc) is read before and after. Target: no growth,
the answer before more than a little of the body was sent. Cases: with API keys and no key (401: the key is
checked before the body is read), without keys a JSON body over its 64 KiB limit (413), each with a
Content-Length and chunked (no length: only counting the bytes can stop it).

Loopback only. Run: ``.venv/bin/python benchmarks/perf/service_limits.py``
"""
from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sportlens.tools.ports import free_port
from sportlens.service.auth import hash_key
from sportlens.service.embedded_redis import EmbeddedRedis

BODY = 150 * 2**20
PIECE = b"[" * 2**16


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


def send_body(port: int, path: str, chunked: bool) -> tuple[str, int]:
    """Sends a 150 MiB body until the server answers; returns the status line and the KiB sent before it."""
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % BODY
    head = (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%s\r\n\r\n"
            % (path.encode(), framing))
    piece = b"%x\r\n%s\r\n" % (len(PIECE), PIECE) if chunked else PIECE
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        try:
            while sent < BODY:
                readable, writable, _ = select.select([connection], [connection], [], 5)
                if readable:
                    break
                if writable:
                    connection.sendall(piece)
                    sent += len(PIECE)
            if chunked and sent >= BODY:
                connection.sendall(b"0\r\n\r\n")
            answer = connection.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            answer = b"(connection closed by the server)"
    return answer.split(b"\r\n", 1)[0].decode(), sent // 2**10


def measure(keyed: bool, redis_url: str, home: Path) -> list[tuple[str, str, int, float, float]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPORTLENS_")}
    env.update(REDIS_URL=redis_url, SPORTLENS_HOME=str(home), SPORTLENS_IN_PROCESS_WORKER="false",
               SPORTLENS_BACKEND_URL="http://127.0.0.1:9", SPORTLENS_MODEL_NAME="none",
               SPORTLENS_QUEUE_NAME=f"limits-{keyed}")
    if keyed:
        env["SPORTLENS_API_KEYS"] = hash_key("benchmark-key-0123456789")
    server = subprocess.Popen([sys.executable, "-m", "sportlens.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for _ in range(5):  # warm: every code path on the way to a refusal has run once
            httpx.post(f"http://127.0.0.1:{port}/v1/questions", content=b"{}", timeout=5)
        rows = []
        for chunked in (False, True):
            before = peak_rss_mib(server.pid)
            status, sent = send_body(port, "/v1/questions", chunked)
            rows.append(("keys, no key" if keyed else "no keys", "chunked" if chunked else "Content-Length",
                         status, sent, before, peak_rss_mib(server.pid)))
        return rows
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis").start()
        try:
            rows = measure(True, redis.url, Path(tmp)) + measure(False, redis.url, Path(tmp))
        finally:
            redis.stop()
    print(f"{'service':<14} {'framing':<15} {'answer':<40} {'KiB sent':>8} {'peak RSS before':>16} {'after':>8} "
          f"{'growth':>7}")
    for service, framing, status, sent, before, after in rows:
        print(f"{service:<14} {framing:<15} {status:<40} {sent:>8} {before:>13.1f} MiB {after:>8.1f} "
              f"{after - before:>+6.1f}")


if __name__ == "__main__":
    main()
