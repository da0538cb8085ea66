"""Progress on the console: concise timed lines outside a terminal, Ray's own output kept quiet."""
import io
import re
import time

from playerseg.progress import Progress, quiet_ray


def test_outside_a_terminal_one_line_every_interval_and_a_last_one():
    stream = io.StringIO()
    with Progress("infer", total=40, unit="frame", interval=0.05, stream=stream, tty=False) as bar:
        time.sleep(0.12)  # nothing yet: it says it waits
        for _ in range(40):
            bar.update(1)
            time.sleep(0.005)
    lines = stream.getvalue().strip().splitlines()
    assert lines[0].startswith("infer: 0/40 frames (0%), waiting for the first results")
    assert any(re.fullmatch(r"infer: \d+/40 frames \(\d+%\), [\d.]+ frames/s, ETA \d+ s", l) for l in lines), lines
    assert re.fullmatch(r"infer: 40 frames in \d+ s \([\d.]+ frames/s\)", lines[-1]), lines[-1]
    assert all("\n" not in l and len(l) < 100 for l in lines)


def test_in_a_terminal_a_tqdm_bar():
    stream = io.StringIO()
    with Progress("render clip", total=5, stream=stream, tty=True) as bar:
        bar.update(5)
    text = stream.getvalue()
    assert "render clip" in text and "5/5" in text and "frame/s" in text


def test_quiet_ray_turns_ray_data_bars_and_plans_off(monkeypatch):
    import ray.data

    ctx = ray.data.DataContext.get_current()
    monkeypatch.setattr(ctx, "enable_progress_bars", True)
    monkeypatch.setattr(ctx, "print_on_execution_start", True)
    monkeypatch.delenv("PLAYERSEG_RAY_VERBOSE", raising=False)
    assert quiet_ray() == {"log_to_driver": False}
    assert ctx.enable_progress_bars is False and ctx.print_on_execution_start is False
    monkeypatch.setenv("PLAYERSEG_RAY_VERBOSE", "1")  # `playerseg -v`: Ray as Ray makes it
    assert quiet_ray() == {"log_to_driver": True} and ctx.enable_progress_bars is True
