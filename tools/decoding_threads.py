"""Where decoding runs: a worker thread per decoder, so that a caller can stop waiting on a stuck one, and the
process's decoding slots, so that few requests decode at once."""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Requests decoding at once in this process, every Video together; more wait their turn, first come first
# served. Half the cores: the other half stays with whatever else the machine runs, a model server above all.
# Where many questions decode at once (the service's workers), requests that all share the cores all finish
# late together and reach the model together; one after another, the first reaches the model early. Measured
# on the 2-core machine, 8 agent questions in flight through vLLM (one model thread): 1 slot answered 5.5%
# more questions/s than no limit (4 alternating pairs, 5.88 vs 6.22 s) — benchmarks/perf/vllm_agent.py.
DECODING_SLOTS = max(1, len(os.sched_getaffinity(0)) // 2)
slots = threading.BoundedSemaphore(DECODING_SLOTS)  # Video.frames_at holds one while it decodes


class Worker:
    """One daemon thread running decoder calls in order, for a Video or for one of its extra decoders.

    A daemon thread, not a ThreadPoolExecutor: executor threads are joined at interpreter exit, so a
    decoder deadlocked in C would hang the process on the way out.
    """

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object] | None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            work, future = job
            if future is None:
                try:
                    work()
                except Exception:
                    log.exception("cleanup on the decoder thread failed")
                continue
            try:
                future.set_result(work())
            except BaseException as error:
                future.set_exception(error)

    def submit(self, work: Callable[[], T]) -> Future[T]:
        """Queue ``work`` for the thread; the Future holds its result."""
        future: Future[T] = Future()
        self._jobs.put((work, future))
        return future

    def run(self, work: Callable[[], T], timeout: float) -> T:
        """Run ``work`` on the thread; raise ``Overrun`` if it has not finished after ``timeout`` s."""
        future = self.submit(work)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():
                raise  # the work itself raised TimeoutError
            raise Overrun from None

    def stop(self, cleanup: Callable[[], object] | None = None) -> None:
        """Run ``cleanup`` (if any) after the queued calls, then end the thread."""
        if cleanup is not None:
            self._jobs.put((cleanup, None))
        self._jobs.put(None)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class Overrun(Exception):
    """A call on the worker thread did not finish in time."""
