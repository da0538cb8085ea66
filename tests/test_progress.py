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


def test_ray_actor_restart_line_goes_to_the_session_log(tmp_path):
    """Ray's C++ core prints "... has constructor arguments in the object store and max_restarts > 0"
    once per process for the first such actor (every Ray Data actor pool makes one); a quiet
    `init_ray` spends it into the session's log, so the job's own actors print nothing. Checked in
    a process of its own (the line is once per process, written to fd 2)."""
    import os
    import subprocess
    import sys

    code = """
import ray
from playerseg.ray_cluster import init_ray
init_ray(num_cpus=1)

@ray.remote(num_cpus=0)
class Model:
    def __init__(self, weights):
        self.n = len(weights)
    def size(self):
        return self.n

pool = Model.options(max_restarts=-1).remote(ray.put(b"w" * 10))  # as Ray Data creates its actors
assert ray.get(pool.size.remote()) == 10
print(ray._private.worker._global_node.get_session_dir_path())
ray.shutdown()
"""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PLAYERSEG_RAY_VERBOSE")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = "has constructor arguments in the object store"
    assert line not in proc.stderr and line not in proc.stdout
    session = proc.stdout.strip().splitlines()[-1]
    with open(os.path.join(session, "logs", "playerseg-driver.log")) as f:
        assert line in f.read()
