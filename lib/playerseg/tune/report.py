"""Train V2 reports as Tune results WITH Tune checkpoints (what PBT clones), and the Train run folder a
(re)started trial trains in.

Ray 2.60's `ray.tune.integration.ray_train.TuneReportCallback` hands a Train report to Tune as metrics
only (the checkpoint as the `checkpoint_path` metric): Tune holds no checkpoint and PBT cannot exploit.
`fit_reporting` runs the trial's TorchTrainer with a `CheckpointReport` callback (a Train `UserCallback`,
called in the Train controller) that passes each report's metrics and checkpoint to the trial process;
there `ray.tune.report(metrics, checkpoint=...)` copies the checkpoint into the trial's Tune folder. The
Train run waits until Tune has it (its next report may delete that Train checkpoint) and Tune's
decision has been taken, as with TuneReportCallback's queue.

A trial's Train run folders, under the sweep's trials/:
  <trial_id>/                              its first run (a trial never exploited: its only one)
  <trial_id>/pbt-<donor>-epoch<NNN>/       a run PBT started from trial <donor>'s epoch-NNN checkpoint:
      parent.json                          the donor, its epoch, checkpoint and run folder, the new config
      init_checkpoint/                     a copy of that checkpoint (the run's `run.init_from`)
Each Tune checkpoint names in its metadata (`ORIGIN`) the trial and run folder that wrote it. A trial
started with one of its own checkpoints (Tuner.restore, a PBT pause) continues that run folder (Train
resumes from the folder's latest checkpoint); with another trial's (a PBT exploit) it trains in the
folder of that donor epoch, so a restart of the same exploit continues it instead of starting over.
"""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

from pyarrow.fs import FileType
from ray.train import UserCallback

from playerseg.io import atomic_dir, read_json, write_json_atomic

ORIGIN = "playerseg_origin"  # Tune checkpoint metadata: {"trial_id", "run", "epoch", "tag"}
PARENT_FILE = "parent.json"
INIT_DIR = "init_checkpoint"
CHECKPOINT_PATH_KEY = "checkpoint_path"  # as TuneReportCallback: the Train checkpoint's path


class CheckpointReport(UserCallback):
    """Train controller side: each report's (rank 0 metrics, checkpoint) to the trial process, then wait
    until it has been reported to Tune. Built in the trial process (the queues are its actors)."""

    def __init__(self):
        from ray.util.queue import Queue

        self.reports = Queue(1, actor_options={"num_cpus": 0})
        self.reported = Queue(1, actor_options={"num_cpus": 0})

    def after_report(self, run_context, metrics, checkpoint):
        self.reports.put((metrics[0], checkpoint))
        self.reported.get()


def _tag(metrics: dict, checkpoint) -> str:
    return f"epoch{int(metrics['epoch']):03d}" if "epoch" in metrics else Path(checkpoint.path).name


def prune_checkpoints(trial_dir: str, keep: int) -> None:
    """Delete all but the `keep` newest Tune checkpoints of a trial folder. Tune's own `num_to_keep`
    breaks under PBT in Ray 2.60: PBT's save of a function trainable registers its latest checkpoint a
    second time, and the manager deletes a folder twice (FileNotFoundError) or too early. Newest by
    time of writing, not by index: a restarted trial's index may go back over its older folders (Tune then
    overwrites their files, which leaves a folder's own mtime as it was)."""
    def written(folder: Path) -> float:
        return max((f.stat().st_mtime for f in folder.iterdir()), default=folder.stat().st_mtime)

    folders = sorted((p for p in Path(trial_dir).glob("checkpoint_*") if p.is_dir()), key=written)
    for old in folders[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def fit_reporting(trainer, origin: dict, extra: dict, keep: int) -> None:
    """`trainer.fit()` in a thread; every Train report becomes `ray.tune.report(metrics + extra, checkpoint)`
    from this (the Tune trial's) thread; the trial keeps its `keep` latest Tune checkpoints. `origin`
    ({"trial_id", "run"}) goes into each checkpoint's metadata. A failed fit raises here; a trial Tune
    stops or pauses ends its actor, and with it the Train run."""
    from ray import tune

    callback = CheckpointReport()
    trainer.run_config.callbacks = [*(trainer.run_config.callbacks or []), callback]
    failure: list[BaseException] = []

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as e:  # re-raised in the trial's thread
            failure.append(e)
        finally:
            callback.reports.put(None)

    thread = threading.Thread(target=fit, name="playerseg-trial-fit", daemon=True)
    thread.start()
    while (item := callback.reports.get()) is not None:
        metrics, checkpoint = item
        metrics = {**metrics, **extra}
        tune_checkpoint = None
        if checkpoint is not None:
            metrics[CHECKPOINT_PATH_KEY] = checkpoint.path
            checkpoint.update_metadata({ORIGIN: {**origin, "epoch": metrics.get("epoch"),
                                                 "tag": _tag(metrics, checkpoint)}})
            tune_checkpoint = tune.Checkpoint(checkpoint.path, checkpoint.filesystem)
        tune.report(metrics, checkpoint=tune_checkpoint)
        if tune_checkpoint is not None:  # get_checkpoint: now the copy in the trial's Tune folder
            prune_checkpoints(str(Path(tune.get_checkpoint().path).parent), keep)
        callback.reported.put(True)
    thread.join()
    if failure:
        raise failure[0]


def trial_run(trial_id: str, trials_dir: str, config: dict) -> tuple[str, dict | None]:
    """(the Train run folder of this start of the trial, relative to `trials_dir`; its parent record, or
    None for a run trained from scratch), from the Tune checkpoint the trial starts with (see above).
    On a PBT exploit, copies the donor's checkpoint into the new run folder and writes parent.json."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None and checkpoint.filesystem.get_file_info(checkpoint.path).type == FileType.NotFound:
        raise FileNotFoundError(f"{checkpoint.path}: this trial's start checkpoint was deleted before the trial "
                                "restarted from it (a donor went on past `keep_checkpoints` epochs): keep more")
    origin = checkpoint.get_metadata().get(ORIGIN) if checkpoint is not None else None
    if not origin:
        return trial_id, None
    if origin["trial_id"] == trial_id:
        run = origin["run"]
    else:
        run = f"{trial_id}/pbt-{origin['trial_id']}-{origin['tag']}"
        folder = Path(trials_dir) / run
        init = folder / INIT_DIR
        if not init.is_dir():  # all or nothing; a restart of this exploit keeps the first copy
            with atomic_dir(init) as tmp:
                checkpoint.to_directory(str(tmp))
        write_json_atomic(str(folder / PARENT_FILE), {
            "trial_id": origin["trial_id"], "epoch": origin.get("epoch"), "run": origin["run"],
            "checkpoint": checkpoint.path, "init_from": str(init), "config": config})
    parent = Path(trials_dir) / run / PARENT_FILE
    return run, read_json(str(parent)) if parent.is_file() else None


def lineage_metrics(run: str, parent: dict | None) -> dict:
    """Reported with every result: the Train run folder and the trial / epoch it was started from."""
    return {"run_folder": run, "parent_trial": parent["trial_id"] if parent else "",
            "parent_epoch": int(parent["epoch"]) if parent and parent.get("epoch") is not None else -1}
