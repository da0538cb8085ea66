"""Search spaces as YAML: dotted config keys -> a search leaf or a fixed value (see tune_spaces/README.md).

    optim.lr: {loguniform: [1.0e-4, 3.0e-3]}
    optim.name: {choice: [adamw, sgd]}
    loss.terms.dice: {uniform: [0.5, 2.0]}      # a key inside a dict field
    input.crop: {grid: [[256, 256], [320, 320]]}
    model: {choice: [{encoder: resnet18, encoder_weights: ""}, {encoder: tu-efficientnet_lite0}]}  # merged
    run.epochs: 6                                # fixed

Keys are checked against the dataclass of the training config (TrainConfig, SamTrainConfig) and every
value a leaf can take (each option, both ends of a range) is checked against the field's type by
building that config, so an unknown key, a misspelt search type or a wrong type is a `SpaceError`
naming the file and the key before any trial starts. Sections may also be nested
(`optim: {lr: {loguniform: [...]}}`); a mapping is a search leaf when its one key is a search type.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from playerseg.config import ConfigError, from_dict, set_path, to_dict

SEARCH_TYPES = ("choice", "uniform", "loguniform", "grid", "randint")


class SpaceError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One searched key: `kind` in SEARCH_TYPES, `args` its list (options, or [lo, hi])."""

    kind: str
    args: tuple

    def to_tune(self):
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.args))
        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "uniform":
            return tune.uniform(*self.args)
        if self.kind == "loguniform":
            return tune.loguniform(*self.args)
        return tune.randint(*self.args)  # hi exclusive

    def mutation(self):
        """PBT `hyperparam_mutations` entry: the distribution (ranges) or the list of options."""
        if self.kind in ("choice", "grid"):
            return list(self.args)
        return self.to_tune()


@dataclasses.dataclass
class Space:
    """A validated search space of config class `cls`: searched leaves and fixed values, by dotted key."""

    cls: type
    leaves: dict[str, Leaf]
    fixed: dict[str, Any]
    path: str = "<space>"

    def param_space(self) -> dict:
        """The `ray.tune` param_space: {dotted key: tune domain or fixed value}."""
        return {**self.fixed, **{k: leaf.to_tune() for k, leaf in self.leaves.items()}}

    def mutations(self) -> dict:
        """PBT `hyperparam_mutations` of every searched key (see `Leaf.mutation`)."""
        return {k: leaf.mutation() for k, leaf in self.leaves.items()}

    def clamp(self, config: dict) -> dict:
        """`config` with every range leaf's value put back inside [low, high] (randint: [low, high)): PBT's
        x0.8 / x1.2 perturbations walk out of the searched range otherwise (PBT `custom_explore_fn`)."""
        out = dict(config)
        for key, leaf in self.leaves.items():
            if leaf.kind in ("uniform", "loguniform", "randint") and isinstance(out.get(key), (int, float)):
                lo, hi = leaf.args
                hi = hi - 1 if leaf.kind == "randint" else hi
                out[key] = type(out[key])(min(max(out[key], lo), hi))
        return out


def _field_type(cls, dotted: str, where: str):
    """The annotation at `dotted` in dataclass `cls` (keys inside dict[str, X] fields allowed)."""
    tp = cls
    walked = []
    for part in dotted.split("."):
        if dataclasses.is_dataclass(tp):
            fields = {f.name for f in dataclasses.fields(tp) if f.init}
            if part not in fields:
                at = ".".join(walked) or tp.__name__
                raise SpaceError(f"{where}: unknown key {dotted!r}: {at} has no {part!r}; "
                                 f"its keys are {sorted(fields)}")
            tp = typing.get_type_hints(tp)[part]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1] if typing.get_args(tp) else Any
        else:
            raise SpaceError(f"{where}: unknown key {dotted!r}: {'.'.join(walked)} is a value, not a section")
        walked.append(part)
    return tp


def _is_leaf_spec(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SEARCH_TYPES


def _flatten(tree: dict, cls, prefix: str, where: str, out: dict) -> None:
    """Dotted keys of a (possibly nested) mapping; nesting is followed while the key is a section."""
    for key, value in tree.items():
        if not isinstance(key, str):
            raise SpaceError(f"{where}: key {key!r} is not a string")
        dotted = f"{prefix}{key}"
        tp = _field_type(cls, dotted, where)
        if dataclasses.is_dataclass(tp) and not _is_leaf_spec(value):
            if not isinstance(value, dict):
                raise SpaceError(f"{where}: {dotted} is a section; give its keys ({dotted}.<key>), got {value!r}")
            _flatten(value, cls, dotted + ".", where, out)
        else:
            out[dotted] = (tp, value)


def _leaf(dotted: str, tp, value, where: str) -> Leaf | None:
    """The Leaf of a value, or None when it is a fixed value."""
    if not isinstance(value, dict) or typing.get_origin(tp) is dict and not _is_leaf_spec(value):
        return None
    if dataclasses.is_dataclass(tp) and not all(isinstance(v, dict) for v in next(iter(value.values())) or [None]):
        raise SpaceError(f"{where}: {dotted} is a section: its {next(iter(value))} options are mappings of its keys")
    if not _is_leaf_spec(value):
        keys = list(value)
        raise SpaceError(f"{where}: {dotted}: {keys} is not a search type; write one of "
                         f"{list(SEARCH_TYPES)} (e.g. {{choice: [a, b]}}) or a plain value")
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise SpaceError(f"{where}: {dotted}: {kind} takes a non-empty list, got {args!r}")
    if kind in ("uniform", "loguniform", "randint"):
        if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise SpaceError(f"{where}: {dotted}: {kind} takes [low, high] numbers, got {args!r}")
        lo, hi = args
        if not lo < hi:
            raise SpaceError(f"{where}: {dotted}: {kind} needs low < high, got {args!r}")
        if kind == "loguniform" and lo <= 0:
            raise SpaceError(f"{where}: {dotted}: loguniform needs low > 0, got {args!r}")
        if kind == "randint" and not all(isinstance(a, int) for a in args):
            raise SpaceError(f"{where}: {dotted}: randint takes [low, high) integers, got {args!r}")
    return Leaf(kind, tuple(args))


def apply(cls, base: dict, values: dict):
    """Config `cls` from `base` (a to_dict tree) with each dotted key of `values` set; the value of a
    section (a dataclass) is merged into it, any other value replaces the old one."""
    import copy

    tree = copy.deepcopy(base)
    for dotted in sorted(values, key=lambda k: k.count(".")):  # a dict value before keys inside it
        section = dataclasses.is_dataclass(_field_type(cls, dotted, "config"))
        set_path(tree, dotted, values[dotted], merge=section)
    return from_dict(cls, tree)


def parse_space(cls, data: dict, where: str = "<space>", base=None) -> Space:
    """Validate a space mapping against config class `cls` (and `base`, an instance, for the checks)."""
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"{where}: a search space is a non-empty mapping of config keys")
    flat: dict = {}
    _flatten(data, cls, "", where, flat)
    leaves, fixed = {}, {}
    for dotted, (tp, value) in flat.items():
        leaf = _leaf(dotted, tp, value, where)
        if leaf is None:
            fixed[dotted] = value
        else:
            leaves[dotted] = leaf
    if not leaves:
        raise SpaceError(f"{where}: nothing is searched (no {'/'.join(SEARCH_TYPES)} leaf)")
    base_tree = to_dict(base if base is not None else cls())
    for dotted, leaf in leaves.items():  # every option / end, with the fixed values, must make a valid config
        for v in leaf.args:
            try:
                apply(cls, base_tree, {**fixed, dotted: v})
            except (ConfigError, TypeError, ValueError) as e:
                raise SpaceError(f"{where}: {dotted}: {leaf.kind} value {v!r} does not fit the config: {e}") from None
    try:
        apply(cls, base_tree, fixed)
    except (ConfigError, TypeError, ValueError) as e:
        raise SpaceError(f"{where}: fixed values do not fit the config: {e}") from None
    return Space(cls, leaves, fixed, where)


def load_space(cls, path: str | Path, base=None) -> Space:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpaceError(f"{path}: search space file not found") from None
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML: {e}") from None
    return parse_space(cls, data, str(path), base)
