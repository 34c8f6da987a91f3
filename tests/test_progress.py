"""Progress without a terminal: a plain line at least every ``interval`` seconds of an epoch."""

from __future__ import annotations

from mgiad.training.progress import Progress, fmt_time


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_timed_lines_without_a_terminal(capsys):
    clock = FakeClock()
    p = Progress(True, total_steps=100, done_steps=10, interval=30.0, tty=False, clock=clock)
    for _ in range(5):  # 5 steps of 4 s: 20 s, no line yet
        clock.now += 4.0
        p.step("epoch 1/2", images=128)
    assert capsys.readouterr().out == ""
    for _ in range(3):  # 8 steps, 32 s: one line
        clock.now += 4.0
        p.step("epoch 1/2", images=128)
    # 8 steps x 128 images in 32 s = 32 img/s; 82 steps left at 4 s each = 328 s
    assert capsys.readouterr().out == "epoch 1/2  step 18/100  32 img/s  eta 5m28s\n"
    for _ in range(7):  # the next stretch starts at that line: 28 s, no line
        clock.now += 4.0
        p.step("epoch 1/2", images=128)
    assert capsys.readouterr().out == ""
    clock.now += 3.0
    p.step("epoch 1/2", images=64)
    # 7 x 128 + 64 images in 31 s = 31 img/s; 74 steps left at 31/8 s each = 287 s
    assert capsys.readouterr().out == "epoch 1/2  step 26/100  31 img/s  eta 4m47s\n"


def test_an_epoch_line_restarts_the_stretch(capsys):
    clock = FakeClock()
    p = Progress(True, total_steps=10, done_steps=0, interval=30.0, tty=False, clock=clock)
    clock.now += 25.0
    p.step("epoch 1/2", images=100)
    clock.now += 100.0  # evaluation, then the epoch's line
    p.line("epoch 1/2  loss ...")
    clock.now += 10.0
    p.step("epoch 2/2", images=100)
    assert capsys.readouterr().out == "epoch 1/2  loss ...\n"  # 10 s since the line: none
    clock.now += 20.0
    p.step("epoch 2/2", images=100)
    # 200 images in the 30 s since the epoch line, not over the 100 s of evaluation
    assert capsys.readouterr().out == "epoch 2/2  step 3/10  7 img/s  eta 1m45s\n"


def test_real_clock_tiny_interval(capsys):
    p = Progress(True, total_steps=3, done_steps=0, interval=0.0, tty=False)
    for _ in range(3):
        p.step("epoch 1/1", images=8)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1] for line in lines] == ["step 1/3", "step 2/3", "step 3/3"]


def test_no_timed_lines_on_a_terminal_or_when_disabled(capsys):
    for enabled, tty in ((True, True), (False, False)):
        p = Progress(enabled, total_steps=5, done_steps=0, interval=0.0, tty=tty)
        for _ in range(5):
            p.step("epoch 1/1", images=8)
        p.close()
        assert "step" not in capsys.readouterr().out


def test_fmt_time():
    assert fmt_time(247) == "4m07s"
    assert fmt_time(3900) == "1h05m"
