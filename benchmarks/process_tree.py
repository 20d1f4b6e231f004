"""Resident memory of a whole process tree over time (a process and its Dask workers)."""

from __future__ import annotations

import threading
import time

import psutil


class Timeline:
    """(time, summed RSS of the process and all its descendants) every `period` seconds."""

    def __init__(self, pid: int, period: float = 0.2):
        self.root = psutil.Process(pid)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            self.samples.append((time.time(), sum(_rss(p) for p in procs)))
            time.sleep(period)

    def peak(self, start: float = 0.0, end: float = float("inf")) -> int:
        """The largest sum seen between `start` and `end` (epoch seconds)."""
        return max((rss for t, rss in self.samples if start <= t <= end), default=0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.NoSuchProcess:
        return 0
