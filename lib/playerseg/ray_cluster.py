"""How playerseg uses Ray outside its streaming pipelines: start or join it, and run a function over a
list of items as Ray tasks.

    init_ray(cfg.address)                          # jobs: Ray kept quiet, our progress bars
    init_ray(dashboard=True, quiet=False)          # Ray Train / Tune: the dashboard, worker output shown
    done, failures = map_items(units, fn, what="extract", name=lambda u: u["uri"], num_cpus=1.0)
    done, failures = map_items(parts, partial(EmbedPart, cfg, fp), actors=2, num_cpus=0.5)  # fn built once per actor

`map_items` is a Ray Data map, one block (one task) per item, or, with `actors`, a pool of Ray Data
actors (`ActorPoolStrategy`) that each build the function once (`fn()` returns the per-item
function: a model, an encoder, a reader held for every item). An item whose function raises one of
`errors` (DataError, OSError, ValueError by default) becomes a named failure and the others
complete; any other exception stops the job, as Ray raises it. The streaming pipelines (inference,
`video.frames.frames_dataset`) build their own datasets.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Sequence

from playerseg.data.errors import DataError, Failures

log = logging.getLogger(__name__)
TASK_ERRORS = (DataError, OSError, ValueError)  # a bad input of one item: named, the others go on


def init_ray(address: str | None = None, *, num_cpus: int | None = None, dashboard: bool = False,
             quiet: bool = True) -> None:
    """Join `address`, else the cluster in RAY_ADDRESS, else start a local Ray (of `num_cpus` CPUs, the
    machine's by default); never twice (an initialized Ray is kept as it is). Prints one line: where
    Ray is and where its logs go.

    - `dashboard`: a local Ray starts the dashboard. Ray Train V2 needs it: its PlacementGroupCleaner
      asks the State API (served by the dashboard) whether the controller lives; without it the cleaner
      took a failed answer for a dead controller and removed a live run's placement group.
    - `quiet`: Ray's console output kept to errors, worker output not forwarded, progress ours
      (`playerseg.progress.quiet_ray`); else Ray's output as Ray makes it (training progress is
      printed by the workers).
    A local Ray started by `playerseg` listens on 127.0.0.1 only (`cli.local_ray_on_loopback`)."""
    import ray

    options = {}
    if quiet:
        from playerseg.progress import quiet_ray

        options = quiet_ray()  # also when Ray is up already: it sets this process's Ray Data context
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ctx = ray.init(address=address, **options)
    else:
        ctx = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True if dashboard else None, **options)
    if quiet:
        from playerseg.progress import spend_actor_restart_warning

        spend_actor_restart_warning()
    logs = f"{ctx.address_info.get('session_dir', '')}/logs" if hasattr(ctx, "address_info") else ""
    url = f", dashboard http://{ctx.dashboard_url}" if getattr(ctx, "dashboard_url", "") else ""
    print(f"ray: {'joined ' + address if address else 'local'}{url}; logs {logs}", flush=True)


def map_items(items: Sequence, fn: Callable, *, num_cpus: float, what: str | None = None,
              name: Callable[[Any], str] = str, unit: str = "item", size: Callable[[Any], int] = lambda item: 1,
              concurrency: int | None = None, fn_kwargs: dict | None = None,
              errors: tuple[type[BaseException], ...] = TASK_ERRORS, actors: int = 0,
              num_gpus: float = 0.0) -> tuple[list[tuple[Any, Any]], Failures]:
    """`fn(item, **fn_kwargs)` for every item, each in its own Ray task (`num_cpus` each, at most
    `concurrency` at a time); items and results cross as JSON. Returns (done, failures): `done` the
    (item, result) pairs of the items that completed, in item order; `failures` one entry per item
    whose `fn` raised one of `errors`, named `name(item)`, in item order.

    With `actors` > 0 the items go to a pool of that many actors (`num_cpus` / `num_gpus` each), each
    of which calls `fn(**fn_kwargs)` once and then the function it returns on each of its items.

    `what` names the stage of a progress bar (`playerseg.progress.Progress`; None: no bar) of
    `sum(size(item))` `unit`s, advanced by `size(item)` when an item completes. Keep `num_cpus`
    fractional where tasks are few and light: whole CPUs with a `concurrency` limit can leave a
    2-CPU node with no CPU for Ray Data's own work."""
    import ray

    failures = Failures()
    if not items:
        return [], failures
    kwargs = fn_kwargs or {}
    rows = [{"index": i, "item": json.dumps(item)} for i, item in enumerate(items)]
    if actors > 0:
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * actors)).map_batches(
            _ItemActor, fn_constructor_args=(fn, kwargs, errors, name), batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=num_cpus, num_gpus=num_gpus or None)
    else:
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
            lambda row: _run_item(row, lambda item: fn(item, **kwargs), errors, name),
            num_cpus=num_cpus, concurrency=concurrency)
    out = {}
    if what is None:
        out = {r["index"]: r for r in ds.iter_rows()}
    else:
        from playerseg.progress import Progress

        with Progress(what, total=sum(size(item) for item in items), unit=unit) as bar:
            for r in ds.iter_rows():
                out[r["index"]] = r
                if not r["error"]:
                    bar.update(size(items[r["index"]]))
    done = []
    for i, item in enumerate(items):
        if out[i]["error"]:
            failures.add(name(item), RuntimeError(out[i]["error"]))
        else:
            done.append((item, json.loads(out[i]["result"])))
    return done, failures


def _run_item(row: dict, fn: Callable, errors: tuple, name: Callable) -> dict:
    """One row of `map_items`' output (one schema for every row, for Arrow): index, JSON result, error text."""
    item = json.loads(row["item"])
    try:
        return {"index": row["index"], "result": json.dumps(fn(item)), "error": ""}
    except errors as e:
        return {"index": row["index"], "result": "", "error": _message(e, name(item))}


class _ItemActor:
    """A Ray Data actor of `map_items(..., actors=N)`: builds the per-item function once."""

    def __init__(self, make: Callable, kwargs: dict, errors: tuple, name: Callable):
        self.fn, self.errors, self.name = make(**kwargs), errors, name

    def __call__(self, batch: dict) -> dict:
        rows = [_run_item({"index": i, "item": item}, self.fn, self.errors, self.name)
                for i, item in zip(batch["index"], batch["item"])]
        return {k: [r[k] for r in rows] for k in ("index", "result", "error")}


def _message(error: BaseException, name: str) -> str:
    """What went wrong with the item `name`, on one line: a DataError about a file the name already
    gives says only its problem; other errors say their type."""
    if isinstance(error, DataError):
        if error.path in name:
            return f"line {error.line}: {error.problem}" if error.line is not None else error.problem
        return str(error)
    return f"{type(error).__name__}: {error}"
