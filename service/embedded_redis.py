"""A private redis-server on loopback for the embedded default (and for tests): AOF on, data under one folder,
restarted on the same data when it dies, and gone when its parent is."""
from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import redis

from sportlens.tools.ports import free_port

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_HOLDERS = re.compile(r"pid (\d+), redis-server pid (\d+)")


class DataDirInUse(RuntimeError):
    """Another embedded Redis (of another running `sportlens serve`) uses the folder."""


class EmbeddedRedis:
    """Starts ``redis-server`` bound to 127.0.0.1 with its append-only file in ``data_dir``; ``stop()`` ends it.

    Restarting it on the same folder and port (``start()`` after ``stop()``) replays the AOF, so queued
    jobs survive, as they would with a shared production Redis configured the same way. While started it is
    supervised: a redis-server that dies is started again on the same port and data, after a short backoff.
    It dies with this process, even a SIGKILLed one (Linux's parent-death signal: SIGTERM, so it syncs its AOF).

    One folder, one Redis: ``start()`` takes an exclusive lock on ``data_dir/lock`` that this process and
    its redis-server hold until both are gone, so a second server never writes the same AOF. The lock names
    its holders; one whose `sportlens serve` is dead (a redis-server left by a crash before it could follow
    its parent) is stale: that redis-server is stopped and the lock taken over.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self._process: subprocess.Popen | None = None
        self._lock: int | None = None
        self._spawned = threading.Condition()
        self._stopping = False
        self._failed = False
        self._supervisor: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The running redis-server's pid (it changes when the supervisor restarts it)."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `apt-get install redis-server`, "
                               "or set REDIS_URL to a Redis of yours")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock(timeout_s)
        self._stopping = self._failed = False
        # The supervisor thread forks every redis-server: the parent-death signal follows the forking thread,
        # so the thread must live as long as the child does, and this one does.
        self._supervisor = threading.Thread(target=self._supervise, args=(binary,), name="embedded-redis",
                                            daemon=True)
        with self._spawned:
            self._supervisor.start()
            self._spawned.wait_for(lambda: self._process is not None or self._failed, timeout_s)
        if self._process is None:
            self.stop()
            raise RuntimeError(f"redis-server could not be started; see {self.data_dir / 'redis.log'}")
        if not self.wait_ready(timeout_s):
            self.stop(kill=True)
            raise RuntimeError(f"redis-server did not start; see {self.data_dir / 'redis.log'}")
        return self

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether it answers PING within ``timeout_s`` (it is not listening yet, or still loading its AOF)."""
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return True
                except redis.exceptions.RedisError:
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    def stop(self, *, kill: bool = False) -> None:
        with self._spawned:
            self._stopping = True
            process = self._process
        if process is not None:
            if kill:
                process.kill()
            else:
                process.terminate()
            process.wait(10)
        if self._supervisor is not None:
            self._supervisor.join(10)
            self._supervisor = None
        self._process = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _supervise(self, binary: str) -> None:
        """Starts redis-server, and again each time it dies until ``stop()``; backs off while it keeps dying."""
        delay = 0.2
        while True:
            started = time.monotonic()
            with self._spawned:
                if self._stopping:
                    return
                try:
                    self._process = self._spawn(binary)
                except OSError as error:
                    log.error("cannot start redis-server: %s", error)
                    self._failed = True
                    self._spawned.notify_all()
                    return
                self._spawned.notify_all()
            code = self._process.wait()
            with self._spawned:
                if self._stopping:
                    return
            log.warning("the embedded redis-server (pid %d) died with code %s; starting it again on %s in %.1f s",
                        self._process.pid, code, self.data_dir, delay)
            delay = 0.2 if time.monotonic() - started > 30 else min(delay * 2, 5.0)
            time.sleep(delay)

    def _spawn(self, binary: str) -> subprocess.Popen:
        parent = os.getpid()
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the child only calls it

        def die_with_parent() -> None:  # in the child, before exec
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before the signal was armed
                os._exit(1)

        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
             "--logfile", str(self.data_dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(self._lock,), preexec_fn=die_with_parent,
        )
        os.ftruncate(self._lock, 0)
        os.pwrite(self._lock, f"pid {parent}, redis-server pid {process.pid}".encode(), 0)
        return process

    def _take_lock(self, timeout_s: float) -> None:
        """Holds ``data_dir/lock``, which names the holders (this process, then its redis-server).

        A lock whose `sportlens serve` is dead is stale: its redis-server is stopped (SIGTERM, so that it syncs
        its AOF), and the lock is taken once it is gone.
        """
        path = self.data_dir / "lock"
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holders = os.pread(handle, 200, 0).decode(errors="replace").strip() or "unknown"
                found = _HOLDERS.fullmatch(holders)
                stale = found is not None and not _alive(int(found[1]))
                if not stale or time.monotonic() > deadline:
                    os.close(handle)
                    raise DataDirInUse(
                        f"the embedded Redis folder {self.data_dir} is in use ({holders}): another `sportlens serve` "
                        f"runs on this SPORTLENS_HOME; stop it, or give this one its own SPORTLENS_HOME (or a "
                        f"shared REDIS_URL)") from None
                orphan = int(found[2])
                if _is_redis_server(orphan):
                    log.warning("taking over %s: its `sportlens serve` (pid %s) is dead; stopping the redis-server "
                                "it left (pid %d)", path, found[1], orphan)
                    os.kill(orphan, signal.SIGTERM)
                time.sleep(0.1)
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"pid {os.getpid()}".encode(), 0)
        self._lock = handle


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:  # a zombie (dead, not yet reaped by its parent) is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _is_redis_server(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "redis-server"
    except OSError:
        return False
