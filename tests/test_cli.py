"""One console script: every job file runs a registered command, every command builds its parser."""
import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import playerseg
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


# ---- a newcomer's mistakes: one line, exit status 2, no traceback --------------------------
ROOT = Path(__file__).resolve().parents[1]


def playerseg_cli(*args, cwd=None, env=None):
    """`playerseg ARGS` as a new process, on this checkout's package."""
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if k != "PLAYERSEG_DEBUG"}
    env.update({"PYTHONPATH": str(Path(playerseg.__file__).resolve().parents[1]), **extra})
    return subprocess.run([sys.executable, "-m", "playerseg.cli", *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory):
    """A clip that exists (so each case has one mistake), a YOLO folder without data.yaml, a broken config."""
    from _testclip import write_test_clip

    tmp = tmp_path_factory.mktemp("mistakes")
    clip = write_test_clip(str(tmp / "clip.mp4"), frames=4)
    (tmp / "yolo" / "train" / "images").mkdir(parents=True)
    (tmp / "broken.yaml").write_text("optim: [unclosed\n")
    (tmp / "sources.yaml").write_text("data:\n  sources:\n    - {name: a, format: acme, root: %s}\n"
                                      "    - {name: b, format: labelme, root: %s/no_such_set}\n" % (tmp, tmp))
    return {"clip": clip, "tmp": str(tmp), "yolo": str(tmp / "yolo"), "broken": str(tmp / "broken.yaml"),
            "sources": str(tmp / "sources.yaml")}


# (command line with {placeholders}, what the one line must name)
MISTAKES = [
    ("infer {tmp}/missing.mp4", "missing.mp4"),
    ("infer {clip} --model {tmp}/no_model", "no_model"),
    ("infer {clip} --set resources.actorz=2", "actorz"),
    ("infer {clip} --batch-size four", "--batch-size"),
    ("infer {clip} --batch-size 0", "--batch-size 0 is out of range"),  # a nested field's flag, named as typed
    ("infer {clip} --end 1 --start 2", "--end"),
    ("infer {clip} --config {broken}", "broken.yaml"),
    ("infer", "no inputs"),
    ("extract {tmp}/missing --out {tmp}/frames", "missing"),
    ("extract {clip} --out {tmp}/frames --every 0", "--every"),
    ("render {tmp}/missing.mp4 --out {tmp}/x.mp4", "missing.mp4"),
    ("render {clip} --out {tmp}/x.mp4 --predictions {tmp}/no_predictions", "no_predictions"),
    ("render {clip} --mode sideways --out {tmp}/x.mp4", "--mode"),
    ("cluster {clip} --predictions {tmp}/no_infer", "no_infer"),
    ("evaluate --data-root {yolo} --set data.format=yolo --out {tmp}/eval", "data.yaml"),
    ("evaluate --data-root {tmp}/no_data --out {tmp}/eval", "no_data"),
    ("evaluate --config {tmp}/missing.yaml --data-root {yolo}", "missing.yaml"),
    ("evaluate --data-from {sources} --out {tmp}/eval", "no_such_set"),
    ("evaluate --data-from {tmp}/no_train.yaml --out {tmp}/eval", "no_train.yaml"),
    ("synth --out {tmp}/synth --width 63", "--width"),
    ("train unet --config {tmp}/missing.yaml", "missing.yaml"),
    ("train unet --set optim.lrr=1", "lrr"),
    ("train unet --num-workers -1", "--num-workers -1 is out of range"),  # was Ray's ValueError traceback
    ("tune unet --out {tmp}/tune", "--space"),
    ("demo {tmp}/missing_clip.mp4", "missing_clip.mp4"),
    ("demo --seconds 0", "--seconds"),
    ("nosuchcommand", "nosuchcommand"),
]


def check_one_line(rc: int, out: str, err: str, names: str) -> None:
    lines = err.strip().splitlines()
    assert rc == 2, err[-3000:]
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert names in lines[0] and lines[0].startswith("playerseg"), lines[0]
    assert "ray:" not in out  # found before Ray starts


@pytest.mark.parametrize("line,names", MISTAKES, ids=[m[0].split(" {")[0] + ":" + m[1] for m in MISTAKES])
def test_a_user_mistake_is_one_line_and_status_2(mistakes, line, names, capsys):
    try:
        rc = main(shlex.split(line.format(**mistakes)))
    except SystemExit as e:  # argparse's own exit (a bad flag value, an unknown command)
        rc = e.code
    captured = capsys.readouterr()
    check_one_line(rc, captured.out, captured.err, names)


# one mistake per command as a new process: what a user sees, interpreter and all
FIRST_MISTAKES = {m[0].split()[0]: m for m in reversed(MISTAKES) if m[0] != "nosuchcommand"}


@pytest.mark.parametrize("command", sorted(FIRST_MISTAKES))
def test_each_command_as_a_process(mistakes, command):
    line, names = FIRST_MISTAKES[command]
    proc = playerseg_cli(*shlex.split(line.format(**mistakes)))
    check_one_line(proc.returncode, proc.stdout, proc.stderr, names)


def test_debug_shows_the_traceback(mistakes):
    from playerseg.config import ConfigError

    with pytest.raises(ConfigError, match="missing.mp4"):
        main(["--debug", "infer", f"{mistakes['tmp']}/missing.mp4"])
    proc = playerseg_cli("infer", f"{mistakes['tmp']}/missing.mp4", env={"PLAYERSEG_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "missing.mp4" in proc.stderr


def test_version_and_examples_in_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith(f"playerseg {playerseg.__version__}")
    for name in ("infer", "evaluate", "render", "extract", "cluster", "demo"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert "examples:\n  playerseg " + name in capsys.readouterr().out


# ---- the README and the help examples cannot drift from the CLI ------------------------------
def command_lines(text: str, prefixes=(".venv/bin/playerseg ", "playerseg ")) -> list[str]:
    """`playerseg ...` lines of a text (README code blocks or a docstring), continuations joined."""
    lines, current = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if current is not None:
            current += " " + line
        elif line.startswith(prefixes):
            current = line
        else:
            continue
        if current.split("#")[0].rstrip().endswith("\\"):
            current = current.split("#")[0].rstrip()[:-1].rstrip()
            continue
        lines.append(current.split(" #")[0].strip())
        current = None
    return lines


def readme_lines() -> list[str]:
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return command_lines("\n".join(blocks))


def help_example_lines() -> list[str]:
    import importlib

    modules = [m for m, _ in COMMANDS.values()] + [m for m, _ in FAMILIES.values()]
    return [l for m in modules for l in command_lines(importlib.import_module(m).__doc__ or "", ("playerseg ",))]


def check_command_line(line: str) -> None:
    """Parses as `playerseg` parses it and builds the command's config (flags and --set keys known)."""
    import importlib

    argv = shlex.split(line)[1:]
    assert argv and argv[0] in COMMANDS, line
    args = build_parser(argv[0]).parse_args(argv)
    module = importlib.import_module(getattr(args, "_family_module", args._module))
    configs = [getattr(args, k, None) for k in ("config", "base_config")]
    if hasattr(module, "config_from_args") and all(c is None or (ROOT / c).is_file() for c in configs):
        module.config_from_args(args)  # (a config file the line names but this checkout lacks: parsed only)


def test_readme_command_lines_run_as_written(monkeypatch):
    monkeypatch.chdir(ROOT)  # README paths are relative to the checkout
    lines = readme_lines()
    assert len(lines) >= 8 and any(l.startswith(".venv/bin/playerseg infer") for l in lines)
    for line in lines:
        check_command_line(line)


def test_help_examples_run_as_written(monkeypatch):
    monkeypatch.chdir(ROOT)
    lines = help_example_lines()
    assert len(lines) >= 15
    for line in lines:
        check_command_line(line)


def test_console_keeps_our_info_and_others_warnings():
    """Without -v the console shows playerseg's INFO but not other libraries' (the ONNX exporter
    logs ~100 INFO lines per export); their warnings still show."""
    import logging

    from playerseg.cli import _ours_or_warning

    def rec(name, level):
        return logging.LogRecord(name, level, __file__, 1, "m", None, None)

    assert _ours_or_warning(rec("playerseg.evaluate", logging.INFO))
    assert not _ours_or_warning(rec("onnx_ir.passes.common", logging.INFO))
    assert _ours_or_warning(rec("onnx_ir.passes.common", logging.WARNING))
    assert not _ours_or_warning(rec("playerseg_other", logging.INFO))
