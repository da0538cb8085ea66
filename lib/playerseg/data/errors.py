"""Bad input: errors that name the file (and line), and batch iteration that skips and reports."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class DataError(ValueError):
    """A problem with one input file. `str()` reads `path:line: problem`."""

    def __init__(self, path, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # crosses process boundaries (Ray tasks, DataLoader workers) intact
        return (type(self), (self.path, self.problem, self.line))


@dataclass
class Failures:
    """Collects what was skipped, for the summary a job ends with."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, error: BaseException) -> None:
        self.items.append((what, str(error)))
        log.warning("skipped %s: %s", what, error)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def summary(self) -> str:
        if not self.items:
            return "no failures"
        lines = [f"{len(self.items)} failure(s):"]
        lines += [f"  - {what}: {err}" for what, err in self.items]
        return "\n".join(lines)

    def as_json(self) -> list[dict]:
        """The failures as a job's summary JSON lists them: `[{"what": ..., "error": ...}]`."""
        return [{"what": what, "error": err} for what, err in self.items]


def skip_bad(keys: Iterable[T], load: Callable[[T], object], failures: Failures) -> Iterator:
    """Yield `load(key)` for each key; a DataError/OSError is recorded in `failures` and skipped."""
    for key in keys:
        try:
            yield load(key)
        except (DataError, OSError, ValueError) as e:
            failures.add(str(key), e)
