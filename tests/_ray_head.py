"""A private local Ray head for tests: `ray start --head --block` on free ports, its own temp dir,
the dashboard (job server, State API) on 127.0.0.1, token auth with its own token.

    with LocalHead(num_cpus=2) as head:
        head.gcs_address       # "127.0.0.1:PORT", for ray.init(address=...)
        head.dashboard_url     # "http://127.0.0.1:PORT", for JobSubmissionClient
        head.auth_headers      # {"Authorization": "Bearer <token>"}

It stops only its own processes: SIGTERM to its `ray start --block` (which shuts the node down),
then SIGKILL to what is left of the process group it was started in. Never `ray stop`, which
stops every Ray cluster of the user. Worker processes get RAY_ADDRESS of this head, so Ray's own
State API calls inside them (e.g. Train V2's placement-group cleaner) find it even when other
Ray clusters run on the same machine.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalHead:
    def __init__(self, num_cpus: int = 2, env: dict | None = None, start_timeout_s: float = 120):
        self.num_cpus = num_cpus
        self.extra_env = env or {}
        self.start_timeout_s = start_timeout_s
        self.token = secrets.token_hex(16)
        self.auth_headers = {"Authorization": f"Bearer {self.token}"}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "LocalHead":
        # short path: Ray's unix sockets live under it (108-character limit)
        self.temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")
        port, dash = free_port(), free_port()
        self.gcs_address = f"127.0.0.1:{port}"
        self.dashboard_url = f"http://127.0.0.1:{dash}"
        self.env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` of jobs = this venv
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_ADDRESS": self.gcs_address,
            "RAY_USAGE_STATS_ENABLED": "0",
            **self.extra_env,
        }
        cmd = [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={port}",
               "--node-ip-address=127.0.0.1", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
               "--include-dashboard=true", f"--num-cpus={self.num_cpus}", "--num-gpus=0",
               f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}", f"--metrics-export-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}"]
        self.log_path = Path(self.temp_dir) / "ray_start.log"
        self.proc = subprocess.Popen(cmd, env=self.env, start_new_session=True,
                                     stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited ({self.proc.returncode}): {self.log_path.read_text()[-3000:]}")
            try:
                JobSubmissionClient(self.dashboard_url, headers=self.auth_headers).list_jobs()
                return
            except Exception as e:  # not up yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Ray head not ready after {self.start_timeout_s}s: {e}") from e
                time.sleep(1)

    def client(self):
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard_url, headers=self.auth_headers)

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group of `ray start` and everything it spawned
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self.stop()
