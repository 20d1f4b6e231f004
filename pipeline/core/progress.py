"""Progress of the long stages: a bar on a terminal, a log line now and then elsewhere.

A fit runs for minutes and a package build, stacking or validation walk for as long; a
person at a terminal sees a tqdm bar (epoch, loss, records kept), and a log (Dagster's
compute log, a batch job's output) gets one plain line every `INTERVAL_S` seconds and at
the end, so it stays readable. `report_to` sends the lines somewhere else (an asset sends
them to Dagster's event log). Parallel stages tick once per finished task (`Runner.map`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

INTERVAL_S = 30.0
_sink: list[Callable[[str], None]] = []  # where plain lines go; stderr when empty


@contextlib.contextmanager
def report_to(sink: Callable[[str], None]) -> Iterator[None]:
    """Plain progress lines go to `sink` (never a bar) while this is active."""
    _sink.append(sink)
    try:
        yield
    finally:
        _sink.pop()


def note(message: str) -> None:
    """One line that is not progress (a decision worth knowing), wherever lines go now."""
    if _sink:
        _sink[-1](message)
    else:
        print(message, file=sys.stderr, flush=True)


class Progress:
    """Counts `total` steps of one stage; `update` may carry figures to show (loss=...)."""

    def __init__(self, desc: str, total: int, unit: str = "step",
                 stream: TextIO | None = None, interval_s: float | None = None):
        self.desc, self.total, self.unit = desc, total, unit
        self.done = 0
        self.figures: dict[str, Any] = {}
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        stream = stream or sys.stderr
        self.bar = None
        if not _sink and stream.isatty():
            self.bar = tqdm(total=total, desc=desc, unit=unit, file=stream, leave=True,
                            dynamic_ncols=True)
        self.write = _sink[-1] if _sink else lambda line: print(line, file=stream, flush=True)
        self.started = self.last = time.monotonic()

    def update(self, n: int = 1, **figures: Any) -> None:
        self.done += n
        self.figures.update(figures)
        if self.bar is not None:
            self.bar.update(n)
            if figures:
                self.bar.set_postfix({k: _fmt(v) for k, v in self.figures.items()},
                                     refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= self.interval_s:
            self.last = now
            self.write(self.line())

    def line(self) -> str:
        """`desc: done/total unit (pct) in Ns, k=v ...`, the plain form of the bar."""
        pct = f" ({self.done / self.total:.0%})" if self.total else ""
        figures = "".join(f", {k} {_fmt(v)}" for k, v in self.figures.items())
        elapsed = time.monotonic() - self.started
        return f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}{pct} in {elapsed:.0f}s" \
               f"{figures}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self.write(self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
