"""Progress: a tqdm bar on a terminal, periodic plain lines otherwise, a tick per task."""

import io

from pipeline.core.parallel import InProcess
from pipeline.core.progress import Progress, report_to


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_every_interval_and_at_the_end():
    stream = io.StringIO()
    with Progress("stage", 4, "file", stream=stream, interval_s=0.0) as p:
        p.update(1, loss=0.123456)
        p.update(3, kept=12345)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("stage: 1/4 file (25%) in ") and lines[0].endswith("loss 0.1235")
    assert lines[-1].endswith(", loss 0.1235, kept 12,345")


def test_quiet_until_the_interval_passes():
    stream = io.StringIO()
    with Progress("stage", 1000, stream=stream, interval_s=3600) as p:
        for _ in range(1000):
            p.update()
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[0]]
    assert stream.getvalue().startswith("stage: 1,000/1,000 step (100%)")


def test_a_terminal_gets_a_bar_with_the_figures():
    stream = Terminal()
    with Progress("fit: L0 phase", 10, "epoch", stream=stream) as p:
        p.update(10, loss=2.5, kept=7)
    text = stream.getvalue()
    assert "fit: L0 phase: 100%" in text and "10/10" in text and "loss=2.5, kept=7" in text


def test_tasks_tick_and_lines_go_to_the_sink():
    lines = []
    with report_to(lines.append):
        assert InProcess().map(pow, [1, 2, 3], 2, desc="squares") == [1, 4, 9]
    assert len(lines) == 1 and lines[0].startswith("squares: 3/3 task (100%)")
    assert InProcess().map(pow, [2], 3) == [8]  # no desc: silent
