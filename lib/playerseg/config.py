"""Typed configuration: dataclasses loaded from YAML, overridden from the command line.

    cfg = load(TrainConfig, "configs/unet.yaml", ["optim.lr=3e-4", "data.crop=[512, 512]"])

Unknown keys and values of the wrong type are errors that name the key and the file, raised
before any work starts. Values of overrides are parsed as YAML (`1e-3`, `true`, `[1, 2]`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def path_field(default: str = "", *, may_not_exist: bool = False):
    """A config field holding a local path or an fsspec URI. `load` makes a relative local path
    absolute against the current folder (Ray workers and Tune trials run in other folders): one
    that exists, or any with `may_not_exist` (a folder a run creates). Names such as
    `effnet-lite0-imagenet` and URIs stay as they are."""
    return dataclasses.field(default=default, metadata={"path": "any" if may_not_exist else "existing"})


def resolve_paths(cfg) -> None:
    """Make the relative local paths of every `path_field` of `cfg` (nested, lists too) absolute."""
    from playerseg.io import is_local

    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        kind = f.metadata.get("path")
        if kind and isinstance(value, str) and value and is_local(value):
            local = Path(value.removeprefix("file://"))
            if not local.is_absolute() and (kind == "any" or local.exists()):
                setattr(cfg, f.name, str(local.resolve()))
        elif dataclasses.is_dataclass(value):
            resolve_paths(value)
        elif isinstance(value, list):
            for item in value:
                if dataclasses.is_dataclass(item):
                    resolve_paths(item)


class ConfigError(ValueError):
    """A mistake in what a command was given: a flag value, a `--set` key, a config file, an input
    path, a model. `playerseg` prints it as one line (no traceback) and exits with status 2."""


def require_path(path: str | Path, what: str, hint: str = "", kind: str = "any") -> None:
    """Raise ConfigError unless the local `path` exists (`kind`: "file", "dir" or "any"); URIs
    (s3://...) are left to the job, since checking them costs a round trip."""
    text = str(path)
    if "://" in text and not text.startswith("file://"):
        return
    p = Path(text.removeprefix("file://"))
    if any(c in text for c in "*?["):
        import glob

        if not glob.glob(str(p), recursive=True):
            raise ConfigError(f"{what} {text}: the pattern matches nothing" + (f"; {hint}" if hint else ""))
        return
    ok = {"file": p.is_file, "dir": p.is_dir}.get(kind, p.exists)()
    if not ok:
        problem = "no such file or folder" if not p.exists() else f"not a {'folder' if kind == 'dir' else 'file'}"
        raise ConfigError(f"{what} {text}: {problem}" + (f"; {hint}" if hint else ""))


def at_least(minimum, default, above: bool = False):
    """A config field whose value must be >= `minimum` (> with `above`; None passes), checked where
    the config is loaded: `batch_size: int = at_least(1, 4)`."""
    return dataclasses.field(default=default, metadata={"above" if above else "min": minimum})


def _check_range(f: dataclasses.Field, value, where: str) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if "min" in f.metadata and value < f.metadata["min"]:
        raise ConfigError(f"{where}: {value!r} is out of range (at least {f.metadata['min']})")
    if "above" in f.metadata and value <= f.metadata["above"]:
        raise ConfigError(f"{where}: {value!r} is out of range (more than {f.metadata['above']})")


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(tp, value, where: str):
    """Check/convert `value` against the annotation `tp`; nested dataclasses are built from dicts."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            with contextlib.suppress(ConfigError):
                return _coerce(arg, value, where)
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {value!r}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(kt, k, where): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; {cls.__name__} takes {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    for f in dataclasses.fields(cls):
        if f.name in kwargs and f.metadata:
            _check_range(f, kwargs[f.name], f"{where}.{f.name}")
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def set_path(tree: dict, dotted: str, value, merge: bool = False) -> None:
    """Set the value at `dotted` in a nested dict: replaced, or with `merge` its keys set one by one."""
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
    if merge and isinstance(value, dict) and isinstance(node.get(keys[-1]), dict):
        value = {**node[keys[-1]], **value}
    node[keys[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict:
    tree: dict = {}
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        set_path(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_file(path: str | Path) -> dict:
    """The mapping in the YAML file at `path`; ConfigError when it is missing, not YAML or not a mapping."""
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return loaded


def load(
    cls: type[T], path: str | Path | None = None, overrides=(), base: dict | None = None, flags: dict | None = None,
    flag_names: dict | None = None,
) -> T:
    """Defaults of `cls`, then `base`, then the YAML file at `path`, then `overrides`, then `flags`.

    `flags` maps dotted keys to values given by explicit command-line flags (None = not given);
    `flag_names` maps (dotted) keys to their flags, which errors then name (`--every 0 is ...`).
    """
    data = _merge(to_dict(cls()), base or {})
    where = str(path) if path else "config"
    if path:
        data = _merge(data, read_file(path))
    data = _merge(data, parse_overrides(overrides))
    explicit: dict = {}
    for key, value in (flags or {}).items():
        if value is not None:
            set_path(explicit, key, value)
    try:
        cfg = from_dict(cls, _merge(data, explicit), where)
        resolve_paths(cfg)
        return cfg
    except ConfigError as e:  # a bad value given by a flag: name the flag, as the user typed it
        for key, flag in (flag_names or {}).items():
            prefix = f"{where}.{key}: "
            if (flags or {}).get(key) is not None and str(e).startswith(prefix):
                raise ConfigError(f"{flag} {str(e)[len(prefix):]}") from None
        raise


def add_config_arguments(parser, cls: type | str) -> None:
    """`--config FILE` and repeatable `--set key.sub=value`, the two ways every job takes config.

    `cls` (the config class, or its name where importing it is slow) only names it in the help.
    """
    parser.add_argument("--config", help=f"YAML file of {getattr(cls, '__name__', cls)} values")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set optim.lr=3e-4 (repeatable)")


def field_keys(cls: type) -> set[str]:
    """The dotted keys of every field of the config class `cls`, nested sections included."""
    hints = typing.get_type_hints(cls)
    keys = set()
    for f in dataclasses.fields(cls):
        if f.init:
            keys.add(f.name)
            if _is_dataclass_type(hints[f.name]):
                keys |= {f"{f.name}.{k}" for k in field_keys(hints[f.name])}
    return keys


def from_args(cls: type[T], args, flags: dict[str, str] | None = None, base: dict | None = None) -> T:
    """Config for a command: defaults < `base` < `--config` < `--set` < explicit flags.

    A flag sets the config field its argparse dest names: `dest="keep_fps"` the field `keep_fps`,
    `dest="run.num_workers"` a nested one (`config`/`overrides` are --config/--set themselves).
    `flags` maps the rare dest that cannot be its field's name to a dotted key. A flag left at None
    (or a positional `nargs="*"` left empty) is not given. Errors name the flag as typed
    (`args._flag_names`, which `playerseg.cli` sets; else `--dest`).
    """
    keys = field_keys(cls)
    dests = {dest: dest for dest in vars(args) if dest in keys and dest not in ("config", "overrides")}
    dests.update(flags or {})
    given, names = {}, {}
    typed = getattr(args, "_flag_names", {})
    for dest, key in dests.items():
        value = getattr(args, dest, None)
        given[key] = None if isinstance(value, list) and not value else value
        names[key] = typed.get(dest) or "--" + dest.replace("_", "-")
    return load(cls, getattr(args, "config", None), getattr(args, "overrides", ()), base=base, flags=given,
                flag_names=names)


def dump(cfg, path: str | Path) -> None:
    from playerseg.io import write_bytes_atomic

    write_bytes_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())
