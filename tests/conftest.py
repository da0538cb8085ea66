"""Shared fixtures: the real test material (skipped when absent) and a tiny synthetic set."""
import os

import pytest

from playerseg.io import shared_data_dir


def _shared(name: str):
    path = shared_data_dir() / name
    if not path.is_dir():
        pytest.skip(f"real test data {path} absent")
    return path


@pytest.fixture(scope="session")
def acme_dir():
    """../shared/data/acme-football-semseg (90 frames 1920x1080 + colour masks)."""
    return _shared("acme-football-semseg")


@pytest.fixture(scope="session")
def detection_dir():
    """../shared/data/football-players-detection (242 frames, YOLO boxes)."""
    return _shared("football-players-detection")


@pytest.fixture(scope="session")
def epl_dir():
    """../shared/data/epl-boards-labelme (198 frames 1280x720, LabelMe board polygons)."""
    return _shared("epl-boards-labelme")


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A tiny synthetic broadcast set (12 frames, 160x96): images/, masks/, classes.json,
    annotations.json, video.mp4. For tests only, never a stand-in for real results."""
    from playerseg.data.synthetic import generate

    out = tmp_path_factory.mktemp("synth")
    generate(str(out), num_frames=12, size=(160, 96), fps=25, seed=0, progress=False)
    return out


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """The ONNX export cache (`models.runtime.cache_dir`) of this session, not the user's: set before
    any test starts Ray, so its workers inherit it."""
    path = tmp_path_factory.mktemp("playerseg-cache")
    old = os.environ.get("PLAYERSEG_CACHE")
    os.environ["PLAYERSEG_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PLAYERSEG_CACHE", None)
    else:
        os.environ["PLAYERSEG_CACHE"] = old


# Ray Train V2 settings for the tests' Train runs, read by its controller and workers (they inherit them
# from the Ray they run in): no PreemptionWatcher actor per run (nothing is preempted on a test node), and
# the controller polls its workers every 0.5 s instead of 2 s (a worker's next report waits for that poll;
# the tests' epochs take about a second). A poll left unanswered is still only a missed health check.
TRAIN_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}


def _own_ray(dashboard: bool):
    import ray

    # set key by key and restored after the shutdown (pytest's MonkeyPatch): never os.environ.clear(), which
    # unsets every variable while threads of the Ray just shut down (or torch's) may still read them
    with pytest.MonkeyPatch.context() as env:
        for key, value in TRAIN_ENV.items():
            env.setenv(key, value)  # before Ray starts: its workers inherit them
        if not ray.is_initialized():
            ray.init(address="local", num_cpus=2, include_dashboard=dashboard)  # its own, never a running one
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_local():
    """An embedded local Ray for the tests of one module (2 CPUs), shut down after them."""
    yield from _own_ray(dashboard=False)


@pytest.fixture(scope="module")
def ray_dashboard():
    """`ray_local` with the dashboard, as `playerseg train` starts it: Train V2's PlacementGroupCleaner
    asks the State API (served by the dashboard) whether the controller lives; without it, on a busy
    machine, it took a failed answer for a dead controller and removed a live run's placement group
    ("actor died")."""
    yield from _own_ray(dashboard=True)


@pytest.fixture(scope="session")
def tune_head():
    """A private Ray head (`_ray_head.LocalHead`, 2 CPUs) for the sweeps of test_tune and test_tune_sam,
    started once for both: the `playerseg tune` / `train` processes join it through its env (RAY_ADDRESS,
    its token). W&B is disabled in it, so in the trials' Train workers too (they inherit the head's env,
    not the CLI's): the tracker is tested with the trainer (test_train)."""
    from _ray_head import LocalHead

    with LocalHead(num_cpus=2, env={"WANDB_MODE": "disabled", **TRAIN_ENV}) as head:
        yield head


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process once pytest has reported, with pytest's exit status, without the interpreter's
    teardown. The suite starts and shuts down a dozen Rays in this one process (a module's `ray_local`, the
    CLIs the tests call); Ray does not promise that a process outlives that (ray-project/ray#31145: threads
    of a shut-down core worker), and on CI the process once crashed (SIGSEGV) in its teardown after
    "340 passed", which failed the run. Nothing is tested there: every assertion and fixture teardown has
    run, the report is printed; a crash during the tests is still a crash (and `make test`'s
    -X faulthandler prints its stacks)."""
    import sys

    status = getattr(config, "_playerseg_exitstatus", None)
    if status is None:  # no session ran (an error before it): pytest exits as it would
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(status))


def pytest_sessionfinish(session, exitstatus):
    session.config._playerseg_exitstatus = exitstatus
