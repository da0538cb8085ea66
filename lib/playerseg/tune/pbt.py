"""Population Based Training over `playerseg train` trials (Ray Tune's PBT, fitted to Train V2 trials).

Every `perturbation_interval` epochs (Tune iterations) a trial of the worst quarter (`quantile_fraction`)
of the running trials clones a trial of the best quarter: it restarts from that donor's latest Tune
checkpoint (exploit; `playerseg.tune.report` makes the trials report them, `run.init_from` starts the
new Train run from its weights and epoch) with the donor's config perturbed (explore): a range key
x0.8 or x1.2 (or, with `resample_probability`, a new draw), a choice key moved to a neighbouring option
(or redrawn). The mutations are the space's searched keys (`Space.mutations`), less the keys that shape
the weights (`weights_keys`: an exploit takes those from the donor, with its weights); perturbed values
are clamped into the searched range (`Space.clamp`).
"""
from __future__ import annotations

from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

from playerseg.tune.space import Space


def shapes_weights(key: str, weights_keys) -> bool:
    """Whether dotted `key` is, holds or lies inside one of `weights_keys` (`model`, `data.classes`)."""
    return any(key == w or key.startswith(w + ".") or w.startswith(key + ".") for w in weights_keys)


def pbt_mutations(space: Space, weights_keys=()) -> dict:
    """PBT's hyperparam_mutations: the searched keys, less those that shape the weights."""
    mutations = {k: v for k, v in space.mutations().items() if not shapes_weights(k, weights_keys)}
    if not mutations:
        raise ValueError(f"{space.path}: PBT has nothing to mutate: every searched key shapes the weights "
                         f"({', '.join(weights_keys)}); search a hyperparameter, or use --scheduler asha")
    return mutations


class TrainPBT(PopulationBasedTraining):
    """Ray's asynchronous PBT without its time-multiplexing: Ray's pauses a trial at each perturbation
    while another trial is paused or pending, to share the cluster between more trials than fit. Here
    Tune holds only each trial's driver (a hundredth of a CPU: its Train workers take their resources
    themselves), the sweep caps the trials at once (`max_concurrent`), and a paused trial is a restarted
    Train run (worker group, data, checkpoint): such pauses, right after every exploit (whose trial is
    paused while it restarts), only cost restarts."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        return TrialScheduler.CONTINUE if decision == TrialScheduler.PAUSE else decision  # the sweep never runs synch PBT


def pbt_scheduler(space: Space, weights_keys, perturbation_interval: int) -> TrainPBT:
    return TrainPBT(time_attr="training_iteration", perturbation_interval=perturbation_interval,
                    hyperparam_mutations=pbt_mutations(space, weights_keys), custom_explore_fn=space.clamp)
