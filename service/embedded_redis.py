"""A private redis-server on loopback for the embedded default (and for tests): AOF on, data under one folder."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from sportlens.ports import free_port


class DataDirInUse(RuntimeError):
    """Another embedded Redis (of another `sportlens serve`, or one its crash left behind) uses the folder."""


class EmbeddedRedis:
    """Starts ``redis-server`` bound to 127.0.0.1 with its append-only file in ``data_dir``; ``stop()`` ends it.

    Restarting it on the same folder and port (``start()`` after ``stop()``) replays the AOF, so queued
    jobs survive, as they would with a shared production Redis configured the same way.

    One folder, one Redis: ``start()`` takes an exclusive lock on ``data_dir/lock`` (raising DataDirInUse when
    it is taken) that this process and its redis-server hold until both are gone, so a second server never
    writes the same AOF, not even beside a redis-server that outlived a killed `sportlens serve`.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self._process: subprocess.Popen | None = None
        self._lock: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `apt-get install redis-server`, "
                               "or set REDIS_URL to a Redis of yours")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        self._process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
             "--logfile", str(self.data_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(self._lock,),
        )
        os.write(self._lock, f", redis-server pid {self._process.pid}".encode())
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.RedisError:  # not listening yet, or still loading its AOF
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop(kill=True)
                    raise RuntimeError(f"redis-server did not start; see {self.data_dir / 'redis.log'}") from None
                time.sleep(0.05)
        client.close()
        return self

    def stop(self, *, kill: bool = False) -> None:
        if self._process is not None:
            if kill:
                self._process.kill()
            else:
                self._process.terminate()
            self._process.wait(10)
            self._process = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _take_lock(self) -> None:
        """Holds ``data_dir/lock``, which names the holders (this process, then its redis-server)."""
        path = self.data_dir / "lock"
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holders = os.read(handle, 200).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            raise DataDirInUse(f"the embedded Redis folder {self.data_dir} is in use ({holders}): another "
                               f"`sportlens serve` runs on this SPORTLENS_HOME; stop it, or give this one its own "
                               f"SPORTLENS_HOME (or a shared REDIS_URL)") from None
        os.ftruncate(handle, 0)
        os.write(handle, f"pid {os.getpid()}".encode())
        self._lock = handle
