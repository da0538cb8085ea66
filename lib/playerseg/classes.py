"""Task classes: the label space every model, reader and metric agrees on."""
from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = 255  # label-map value for pixels that count for no class (e.g. `unlabelled`)

DEFAULT_CLASSES = ("background", "player", "led_board")


@dataclass(frozen=True)
class TaskClasses:
    """Ordered class names; the index of a name is its id in label maps and model outputs."""

    names: tuple[str, ...] = DEFAULT_CLASSES

    def __post_init__(self):
        if not self.names or self.names[0] != "background":
            raise ValueError(f"task classes must start with 'background', got {list(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"task classes repeat a name: {list(self.names)}")

    def __len__(self) -> int:
        return len(self.names)

    def id(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown task class {name!r}; classes are {list(self.names)}") from None

    def get(self, name: str) -> int | None:
        return self.names.index(name) if name in self.names else None

    @property
    def player(self) -> int | None:
        return self.get("player")

    @property
    def led_board(self) -> int | None:
        return self.get("led_board")
