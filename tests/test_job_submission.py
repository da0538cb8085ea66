"""`ray job submit` path: a private local head (its own ports, temp dir, token), the repository as
the job's working_dir, `jobs/extract_frames.py` on a tiny synthetic clip, SUCCEEDED, outputs checked;
only that head is stopped (never `ray stop`)."""
import time
from pathlib import Path

import pytest

from _ray_head import LocalHead

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# What a submission uploads: the checkout without the venv, git history and local outputs.
EXCLUDES = [".venv", ".git", "runs", "outputs", "wandb", "**/__pycache__", ".pytest_cache", "*.egg-info"]


def runtime_env(**env_vars) -> dict:
    """The runtime_env of the README's `ray job submit`: the job's own copy of lib/playerseg is what
    every worker imports (py_modules), whatever is installed on the nodes."""
    return {"working_dir": str(REPO), "excludes": EXCLUDES, "py_modules": [str(REPO / "lib" / "playerseg")],
            "env_vars": env_vars}


def wait(client, job_id: str, timeout_s: float = 240):
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return status
        time.sleep(1)
    client.stop_job(job_id)
    raise AssertionError(f"job {job_id} still {status} after {timeout_s}s:\n{client.get_job_logs(job_id)[-3000:]}")


@pytest.fixture(scope="module")
def head():
    with LocalHead(num_cpus=2) as h:
        yield h


def test_submit_extract_frames(head, tmp_path):
    from ray.job_submission import JobStatus

    from _testclip import write_test_clip

    clip = write_test_clip(str(tmp_path / "clip.mp4"), frames=24, width=96, height=64)
    out = tmp_path / "frames"
    client = head.client()
    job_id = client.submit_job(
        entrypoint=f"python jobs/extract_frames.py {clip} --out {out} --every 4 --num-cpus 0.5",
        runtime_env=runtime_env(PLAYERSEG_TEST_MARK="job-env"),
    )
    status = wait(client, job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    frames = sorted(p.name for p in out.glob("*/*.jpg"))
    assert frames == [f"{i:06d}.jpg" for i in range(0, 24, 4)], frames
    assert (out / "_summary.json").is_file()


def test_workers_import_the_submitted_code(head):
    """Remote tasks of a job import playerseg from the job's package, not from an install."""
    from ray.job_submission import JobStatus

    script = ("import os, ray; ray.init(); "
              "f = ray.remote(num_cpus=0.1)(lambda: (__import__('playerseg').__file__, os.environ['PLAYERSEG_TEST_MARK'])); "
              "print('REMOTE', *ray.get(f.remote()))")
    client = head.client()
    job_id = client.submit_job(entrypoint=f'python -c "{script}"', runtime_env=runtime_env(PLAYERSEG_TEST_MARK="job-env"))
    status = wait(client, job_id)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    line = next(ln for ln in logs.splitlines() if ln.startswith("REMOTE"))
    _, module_file, mark = line.split()
    assert "runtime_resources" in module_file and str(REPO) not in module_file, module_file
    assert mark == "job-env"


def test_failed_job_reports_failed(head):
    from ray.job_submission import JobStatus

    client = head.client()
    job_id = client.submit_job(entrypoint="python jobs/extract_frames.py /nonexistent/clip.mp4 --out /tmp/unused",
                               runtime_env=runtime_env())
    assert wait(client, job_id) == JobStatus.FAILED
