"""What a job shows on the console while it runs: one progress line per stage, and Ray kept quiet.

    with Progress("infer", total=1348, unit="frame") as bar:
        for row in ds.iter_rows():
            bar.update(1)

- In a terminal (stderr is a TTY) each stage is a tqdm bar: done/total, frames/s and ETA.
- Elsewhere (CI, `ray job logs`, a pipe) one line every PLAYERSEG_PROGRESS_SECONDS (default 10)
  seconds, and one when the stage ends:
      infer: 674/1348 frames (50%), 15.2 frames/s, ETA 44 s
- `quiet_ray()` (called by `playerseg.ray_cluster.init_ray`) turns Ray Data's own progress bars
  and resource dumps off (`DataContext.enable_progress_bars`, `print_on_execution_start`), keeps
  Ray's INFO/WARNING records off the console (the "ray.data" logger still writes them to the
  session's `logs/ray-data/ray-data.log`; the driver's "ray" records go to
  `logs/playerseg-driver.log`) and does not forward worker output (`ray.init(log_to_driver=False)`;
  it stays in the session's `logs/worker-*` files). Errors still reach the console. `playerseg -v`
  (PLAYERSEG_RAY_VERBOSE=1) leaves all of Ray's output as Ray makes it. Ray's C++ line about
  actor constructor arguments goes to `logs/playerseg-driver.log` too (`spend_actor_restart_warning`).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time

INTERVAL_ENV = "PLAYERSEG_PROGRESS_SECONDS"
VERBOSE_ENV = "PLAYERSEG_RAY_VERBOSE"
DRIVER_LOG = "playerseg-driver.log"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


class Progress:
    """Progress of one stage: a tqdm bar in a terminal, else a line every `interval` seconds (also
    while nothing arrives, e.g. while model actors start) and a last line from `close()`."""

    def __init__(self, stage: str, total: int | None, unit: str = "frame", interval: float | None = None,
                 stream=None, tty: bool | None = None):
        self.stage, self.total, self.unit = stage, total, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._first: tuple[float, int] | None = None  # (time, done) at the first update: start-up excluded
        self._bar = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        if tty if tty is not None else getattr(self.stream, "isatty", lambda: False)():  # a terminal
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=stage, unit=unit, file=self.stream, dynamic_ncols=True,
                             smoothing=0.1)
        else:
            self.interval = float(interval if interval is not None else os.environ.get(INTERVAL_ENV, 10))
            self._thread = threading.Thread(target=self._tick, daemon=True, name=f"progress-{stage}")
            self._thread.start()

    def update(self, n: int = 1) -> None:
        with self._lock:
            if self._first is None:
                self._first = (time.monotonic(), n)
            self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def line(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        units = f"{self.unit}s"
        if final:
            return f"{self.stage}: {self.done} {units} in {_duration(elapsed)} ({rate:.1f} {units}/s)"
        text = f"{self.stage}: {self.done}"
        if self.total:
            text += f"/{self.total} {units} ({100 * self.done / self.total:.0f}%)"
        else:
            text += f" {units}"
        if not self.done:
            return text + f", waiting for the first results ({_duration(elapsed)})"
        t_first, n_first = self._first or (self.start, 0)
        if time.monotonic() - t_first > 1 and self.done > n_first:  # the rate since work arrived
            rate = (self.done - n_first) / (time.monotonic() - t_first)
        text += f", {rate:.1f} {units}/s"
        if self.total and rate > 0:
            text += f", ETA {_duration(max(0, self.total - self.done) / rate)}"
        return text

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            print(self.line(final=True), file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- Ray on the console ---------------------------------------------------------------------
class _SessionFileHandler(logging.Handler):
    """Records of the driver's "ray" logger, written to `<Ray session>/logs/playerseg-driver.log`
    (kept in memory until the session exists)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self._file: logging.Handler | None = None
        self._pending: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self._file is None:
            import ray

            node = getattr(ray._private.worker, "_global_node", None)
            if node is None:
                self._pending = (self._pending + [record])[-1000:]
                return
            folder = os.path.join(node.get_session_dir_path(), "logs")
            os.makedirs(folder, exist_ok=True)
            self._file = logging.FileHandler(os.path.join(folder, DRIVER_LOG))
            self._file.setFormatter(self.formatter)
            for r in self._pending:
                self._file.emit(r)
            self._pending = []
        self._file.emit(record)


_QUIET = {"done": False}


def quiet_ray() -> dict:
    """Keep Ray's own console output to errors (see the module doc); returns the `ray.init` keywords
    that go with it. Nothing changes with `playerseg -v` (PLAYERSEG_RAY_VERBOSE=1)."""
    import ray.data  # noqa: F401  (configures the "ray.data" loggers first)

    ctx = ray.data.DataContext.get_current()
    if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        ctx.enable_progress_bars = True
        return {"log_to_driver": True}
    ctx.enable_progress_bars = False  # our own bar per stage instead (Progress)
    ctx.print_on_execution_start = False  # the execution plan of every dataset
    if not _QUIET["done"]:
        _QUIET["done"] = True
        for name in ("ray", "ray.data", "ray.train", "ray.tune"):
            logger = logging.getLogger(name)
            for h in logger.handlers:
                if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                    h.setLevel(logging.ERROR)
        logging.getLogger("ray").addHandler(_SessionFileHandler())
        _route_ray_warnings()
    return {"log_to_driver": False}


def spend_actor_restart_warning() -> None:
    """Send Ray's "actor restart" line to the session's log instead of the console.

    Ray's core worker prints one line, once per process, the first time the process creates an
    actor that may restart and whose constructor arguments are in the object store ("... has
    constructor arguments in the object store and max_restarts > 0", ray issue 53727). Ray Data's
    actor pools always create their actors so (the map function and the context travel by
    reference; restarts on, which is what keeps a job alive when a node goes), so every inference
    run printed it, a line the user cannot act on. It is written by Ray's C++ logger straight to
    the process's stderr (fd 2), past Python's logging. Here a throwaway actor of that kind is
    created, and killed, while fd 2 points to `<session>/logs/playerseg-driver.log`: the one line
    goes there, and the pools' actors print nothing. Off with `playerseg -v`; a no-op without a
    local session folder (a driver on another machine than its Ray)."""
    import ray

    if _QUIET.get("spent") or os.environ.get(VERBOSE_ENV, "") not in ("", "0") or not ray.is_initialized():
        return
    _QUIET["spent"] = True
    node = getattr(ray._private.worker, "_global_node", None)
    folder = os.path.join(node.get_session_dir_path(), "logs") if node is not None else ""
    if not folder or not os.path.isdir(folder):
        return

    @ray.remote(num_cpus=0)
    class _Throwaway:
        def __init__(self, arg):
            pass

    arg = ray.put(b"")
    fd = os.open(os.path.join(folder, DRIVER_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(fd, 2)
        actor = _Throwaway.options(max_restarts=1).remote(arg)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)
    ray.kill(actor, no_restart=True)


def _route_ray_warnings() -> None:
    """Python warnings raised inside Ray's own modules go to the "ray" logger (the session's log
    file), not the console; every other warning is shown as before."""
    import warnings

    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if f"{os.sep}ray{os.sep}" in str(filename):
            logging.getLogger("ray").warning("%s:%s: %s: %s", filename, lineno, category.__name__, message)
        else:
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
