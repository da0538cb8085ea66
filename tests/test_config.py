"""Typed YAML config with CLI overrides: defaults, files, overrides, and errors that name the key."""
from dataclasses import dataclass, field

import pytest

from playerseg.classes import TaskClasses
from playerseg.config import ConfigError, dump, load


@dataclass
class Optim:
    name: str = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Cfg:
    epochs: int = 3
    amp: bool = False
    crop: list[int] = field(default_factory=lambda: [512, 512])
    optim: Optim = field(default_factory=Optim)
    note: str | None = None


def test_defaults_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\noptim:\n  lr: 0.01\n")
    cfg = load(Cfg, path, ["optim.name=sgd", "crop=[256, 128]", "amp=true"])
    assert cfg.epochs == 5 and cfg.optim.lr == 0.01 and cfg.optim.name == "sgd"
    assert cfg.crop == [256, 128] and cfg.amp is True and cfg.optim.betas == (0.9, 0.999)


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load(Cfg, overrides=["optim.lr=1"]).optim.lr == 1.0
    with pytest.raises(ConfigError, match="epochs"):
        load(Cfg, overrides=["epochs=2.5"])


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load(Cfg, path)
    assert "lrr" in str(e.value) and "bad.yaml" in str(e.value)


def test_wrong_type_and_bad_override_syntax():
    with pytest.raises(ConfigError, match="amp"):
        load(Cfg, overrides=["amp=maybe"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load(Cfg, overrides=["epochs"])


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(Cfg, tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load(Cfg, broken)


def test_dump_round_trips(tmp_path):
    cfg = load(Cfg, overrides=["optim.lr=0.5", "note=hello"])
    dump(cfg, tmp_path / "out.yaml")
    assert load(Cfg, tmp_path / "out.yaml") == cfg


def test_task_classes():
    classes = TaskClasses()
    assert classes.names == ("background", "player", "led_board")
    assert classes.player == 1 and classes.led_board == 2 and len(classes) == 3
    assert TaskClasses(("background", "player")).led_board is None
    with pytest.raises(ValueError):
        TaskClasses(("player", "background"))
    with pytest.raises(KeyError, match="ball"):
        classes.id("ball")


def test_from_args_precedence(tmp_path):
    import argparse

    from playerseg.config import add_config_arguments, from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Cfg)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--epochs", type=int)
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\noptim:\n  lr: 0.01\n  name: sgd\n")
    args = parser.parse_args(["--config", str(path), "--set", "optim.lr=0.2", "--set", "epochs=7", "--lr", "0.3"])
    cfg = from_args(Cfg, args, {"lr": "optim.lr", "epochs": "epochs"})
    # file < --set < explicit flag; a flag not given (epochs) leaves --set's value
    assert cfg.optim.lr == 0.3 and cfg.epochs == 7 and cfg.optim.name == "sgd"


def test_exponent_without_dot_is_a_float():
    assert load(Cfg, overrides=["optim.lr=1e-3"]).optim.lr == 1e-3
    with pytest.raises(ConfigError, match="lr"):
        load(Cfg, overrides=["optim.lr=fast"])


def test_path_fields_are_made_absolute_once_where_the_config_is_loaded(tmp_path, monkeypatch):
    """Training configs travel to Ray workers and Tune trials that run in other folders: `load`
    resolves every path field (sources' roots, init weights...), never names, URIs or other strings."""
    from playerseg.train.config import TrainConfig

    (tmp_path / "acme").mkdir()
    (tmp_path / "models" / "m").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    cfg = load(TrainConfig, None, ["data.sources=[{format: acme, root: acme}, {format: yolo, root: s3://b/yolo}]",
                                   "run.init_weights=models/m", "run.resume=not/there", "run.name=acme"])
    assert [s.root for s in cfg.data.sources] == [str(tmp_path / "acme"), "s3://b/yolo"]
    assert cfg.run.init_weights == str(tmp_path / "models" / "m")
    assert cfg.run.resume == "not/there"  # missing: left for its own error message
    assert cfg.model.encoder_weights == "effnet-lite0-imagenet" and cfg.run.name == "acme"  # not path fields
