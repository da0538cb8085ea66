"""`playerseg <command>`: one console script, one subcommand per job.

Where a command lives, one rule: a `*_cmd.py` module beside the logic it runs (`infer/infer_cmd.py`
beside `infer/pipeline.py`) holds its flags (`add_arguments(parser)`), its config from them
(`config_from_args`), the checks that can fail before work starts and `run(args) -> int`; logic
modules hold no argparse. A flag's dest names the config field it sets (`dest="keep_fps"`, dotted
for a nested one: `dest="run.num_workers"`), which `config.from_args` reads: no table of flags.
Modules are imported only when their command runs, so `playerseg --help` stays fast.
Adding a job is adding a module and a line here. The examples of `playerseg COMMAND --help` are
the `playerseg ...` lines of the module's docstring.

A mistake of the person running a command (a missing file, a bad flag value, an unknown `--set`
key, a missing model, an unreadable config: `USER_ERRORS`) ends as one line on stderr and exit
status 2, here and nowhere else; `--debug` (or PLAYERSEG_DEBUG=1) shows the traceback instead.
Failures inside a batch are the jobs' own business: reported in their summary, exit status 1.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from playerseg.config import ConfigError
from playerseg.data.errors import DataError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)  -- keep one line per command
    "demo": ("playerseg.demo_cmd", "the whole pipeline on this machine: local Ray, sample clips, model, inference, overlay video, index.html"),
    "infer": ("playerseg.infer.infer_cmd", "segment players / LED boards in videos on Ray: instances to Parquet + COCO JSON"),
    "cluster": ("playerseg.players.cluster_cmd", "team assignment (k-means on player embeddings) and LED / truncated / merged flags, written into inference outputs"),
    "extract": ("playerseg.video.extract_cmd", "frames of videos as JPEG/PNG files or Parquet rows (Ray, sharded)"),
    "render": ("playerseg.video.render_cmd", "H.264 mp4 of frames with predicted players/LED boards drawn (Ray)"),
    "synth": ("playerseg.synth_cmd", "write a synthetic broadcast set (tests, benchmarks)"),
    "export": ("playerseg.export_cmd", "export a trained model: ONNX / torch.export .pt2 (dynamic sizes, classes + preprocessing inside), TorchScript, safetensors"),
    "evaluate": ("playerseg.evaluate_cmd", "evaluate a checkpoint on a dataset split: metrics, report, worst-frame gallery"),
    "train": ("playerseg.train_cmd", "train a segmentation model as a Ray Train job (`playerseg train unet ...`)"),
    "tune": ("playerseg.tune.tune_cmd", "hyperparameter sweep (Ray Tune, ASHA/PBT) over `playerseg train`: results table, best config + checkpoint"),
}

# what a user can fix: printed as one line, exit status 2
USER_ERRORS = (ConfigError, DataError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
DEBUG_ENV = "PLAYERSEG_DEBUG"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (bad flag values, unknown flags): status 2, no usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def examples(doc: str | None) -> str | None:
    """The `playerseg ...` command lines of a docstring (with their `\\` continuations), as an epilog."""
    lines, keep = [], False
    for line in (doc or "").splitlines():
        text = line.strip()
        if text.startswith("playerseg ") or (keep and text):
            lines.append("  " + text)
            keep = text.split("#")[0].rstrip().endswith("\\")
        else:
            keep = False
    return "examples:\n" + "\n".join(lines) if lines else None


def _common() -> argparse.ArgumentParser:
    """Global flags, accepted before or after the command (defaults suppressed so neither overrides)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging, and Ray's own messages on the console")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help=f"show the traceback of an error (also {DEBUG_ENV}=1)")
    return p


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    import playerseg

    try:
        ray = dist_version("ray")
    except PackageNotFoundError:
        ray = "not installed"
    return f"playerseg {playerseg.__version__} (ray {ray}, python {sys.version.split()[0]})"


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> the flag a user types for it (the long option named like the field, else the first),
    which config errors name; a dotted dest (a nested config field, `run.num_workers`) shows its
    flag's name as metavar (`--num-workers NUM_WORKERS`), as a plain dest would."""
    names = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs:
            continue
        leaf = action.dest.rsplit(".", 1)[-1].replace("_", "-")
        names[action.dest] = next((o for o in longs if o[2:] == leaf), longs[0])
        if "." in action.dest and action.metavar is None and action.choices is None and action.nargs != 0:
            action.metavar = longs[0][2:].replace("-", "_").upper()
    return names


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `only` (so one command imports only its own module)."""
    common = _common()
    parser = Parser(prog="playerseg", description=__doc__.splitlines()[0], parents=[common])
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=examples(mod.__doc__),
                           formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])
        mod.add_arguments(p)
        p.set_defaults(_module=module, _flag_names=flag_names(p))
    return parser


def one_line(error: BaseException) -> str:
    """What a user error says, on one line (a Ray task's error: its cause's message)."""
    error = getattr(error, "cause", None) or error
    if isinstance(error, OSError) and error.filename and not isinstance(error, DataError):
        text = f"{error.filename}: {(error.strerror or str(error)).lower()}; check the path"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def local_ray_on_loopback(argv: list[str]) -> None:
    """A command that starts its own local Ray (no `--address`, no RAY_ADDRESS) keeps every Ray
    endpoint on 127.0.0.1: the Prometheus metrics exporters (no authentication, 0.0.0.0 by
    default), the agents and the services. Ray 2.60 binds them to loopback when its node address
    is loopback, which `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` selects (single-node Ray); it is read
    when `ray` is imported, hence here, before any command module loads. Set it to 1 to reach a
    local Ray from other machines."""
    joins = os.environ.get("RAY_ADDRESS") or any(a == "--address" or a.startswith("--address=") for a in argv)
    if not joins and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")


def _ours_or_warning(record: logging.LogRecord) -> bool:
    """Console filter without `-v`: playerseg's own INFO, and WARNING or worse from anyone."""
    return record.levelno >= logging.WARNING or record.name.split(".")[0] in ("playerseg", "__main__")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    local_ray_on_loopback(argv)
    names = [a for a in argv if not a.startswith("-")]
    only = names[0] if names and names[0] in COMMANDS else None
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    prog = f"playerseg {only}" if only else "playerseg"
    try:
        args = build_parser(only).parse_args(argv)
        verbose = getattr(args, "verbose", False)
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if not verbose:  # other libraries' INFO (e.g. the ONNX exporter's ~100 lines per export) is noise here
            for handler in logging.getLogger().handlers:
                handler.addFilter(_ours_or_warning)
        if verbose:
            os.environ.setdefault("PLAYERSEG_RAY_VERBOSE", "1")  # playerseg.progress keeps Ray's console output
        return int(importlib.import_module(args._module).run(args) or 0)
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except SystemExit as e:  # `raise SystemExit("message")`: a user error too
        if isinstance(e.code, str) and not debug:
            print(f"{prog}: error: {' '.join(e.code.split())}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
