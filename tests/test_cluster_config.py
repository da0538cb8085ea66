"""cluster.yaml is a valid Ray cluster launcher config (checked offline with Ray's own schema)."""
import copy
import re
from pathlib import Path

import pytest
import yaml

from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(raw):
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_ray_accepts_the_config(prepared):
    assert prepared["cluster_name"] == "playerseg"


def test_ray_validation_is_not_a_no_op(raw):
    broken = copy.deepcopy(raw)
    broken["available_node_types"]["worker_gpu"]["gpus"] = 1  # not a field of a node type
    with pytest.raises(Exception):
        validate_config(prepare_config(broken))


def test_cpu_head_and_autoscaled_gpu_workers(prepared):
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] > 0
    gpu_types = [t for name, t in types.items() if t["resources"].get("GPU", 0) > 0]
    assert gpu_types, "no GPU worker type"
    for t in gpu_types:
        assert 0 <= t["min_workers"] < t["max_workers"] <= prepared["max_workers"]
        assert re.match(r"(g5|g6|p4d|p5)\.", t["node_config"]["InstanceType"])


def test_project_is_mounted_and_installed_with_its_constraints(prepared):
    remote = [r for r, local in prepared["file_mounts"].items() if local in (".", "./")]
    assert remote, "the project checkout is not in file_mounts"
    setup = " ".join(prepared["setup_commands"])
    assert f"-c {remote[0]}/constraints.txt" in setup and f"-e {remote[0]}" in setup
    assert ".venv" in prepared["rsync_exclude"]
    images = prepared["docker"]
    assert "2.60.0-py311" in images["head_image"] and "2.60.0-py311" in images["worker_image"]


def test_dashboard_only_on_localhost(prepared):
    start = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in start


def test_no_credentials_in_file():
    text = CLUSTER_YAML.read_text()
    for pattern in (r"AKIA[0-9A-Z]{12,}", r"(?i)aws_secret", r"(?i)aws_access_key",
                    r"(?i)ssh_private_key", r"(?i)api_key\s*[:=]", r"(?i)password", r"(?i)token\s*[:=]"):
        assert not re.search(pattern, text), pattern
