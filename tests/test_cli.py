"""One console script: every job file runs a registered command, every command builds its parser."""
import ast
from pathlib import Path

import pytest

from playerseg.cli import COMMANDS, build_parser, main
from playerseg.train_cmd import FAMILIES

JOBS = sorted(p for p in (Path(__file__).resolve().parents[1] / "jobs").glob("*.py") if not p.name.startswith("_"))


def _run_args(path: Path) -> list[str]:
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "run"]
    assert len(calls) == 1, f"{path.name} should be a thin shell with one run(...) call"
    return [a.value for a in calls[0].args]


@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.name)
def test_job_file_runs_a_registered_command(job):
    command, *family = _run_args(job)
    assert command in COMMANDS
    if command == "train":
        assert family and family[0] in FAMILIES


def test_every_command_builds_its_parser_and_help_lists_them(capsys):
    help_text = build_parser().format_help()
    for name in COMMANDS:
        assert name in help_text
    with pytest.raises(SystemExit) as e:
        main(["extract", "--help"])
    assert e.value.code == 0 and "--config" in capsys.readouterr().out
