"""The typed configuration of a training run (`playerseg train unet --config ... --set a.b=c`), and the
run flags every `playerseg train <family>` shares (`add_run_arguments`)."""
from __future__ import annotations

from dataclasses import dataclass, field

from playerseg.data.registry import DataConfig
from playerseg.losses import LossConfig
from playerseg.models.registry import ModelConfig
from playerseg.optim import OptimConfig, SchedConfig, SWAConfig
from playerseg.config import at_least, path_field


@dataclass
class AugSpec:
    """One augmentation: probability `p` (0 = off) and its `strength` (meaning per augmentation)."""

    p: float = 0.0
    strength: float = 0.0


@dataclass
class AugmentConfig:
    """albumentations pipeline of the training crops; see `playerseg.train.augment` for strengths."""

    scale: AugSpec = field(default_factory=lambda: AugSpec(1.0, 0.25))  # zoom in [1-s, 1+s]
    rotate: AugSpec = field(default_factory=lambda: AugSpec(0.3, 10.0))  # degrees
    hflip: AugSpec = field(default_factory=lambda: AugSpec(0.5, 0.0))
    vflip: AugSpec = field(default_factory=lambda: AugSpec(0.0, 0.0))
    rgb_shift: AugSpec = field(default_factory=lambda: AugSpec(0.3, 15.0))  # per-channel shift, 0..255
    brightness_contrast: AugSpec = field(default_factory=lambda: AugSpec(0.5, 0.2))
    hsv: AugSpec = field(default_factory=lambda: AugSpec(0.3, 15.0))  # hue shift (sat, val 1.5x)
    blur: AugSpec = field(default_factory=lambda: AugSpec(0.2, 1.5))  # max Gaussian sigma, px
    elastic: AugSpec = field(default_factory=lambda: AugSpec(0.0, 30.0))  # alpha, px
    grid_distortion: AugSpec = field(default_factory=lambda: AugSpec(0.0, 0.2))  # distort limit


@dataclass
class InputConfig:
    """How frames reach the network; stored with every exported model as its preprocessing."""

    scale: float = 0.5  # frames are resized by this factor first (0.5: 1920x1080 -> 960x540)
    # > 0: every frame is resized to this height instead, whatever its source resolution (the
    # model's resolution policy, stored in model.json; inference and evaluate follow it)
    target_height: int = 0
    crop: tuple[int, int] = (384, 384)  # training crop (h, w) of the scaled frame
    # share of crops taken around a labelled object (a player's box, a board): thin boards and
    # small wide-shot players fill few random crops of a 720p frame
    object_crop_p: float = 0.0
    pad_multiple: int = 32  # validation / inference pads to a multiple of this


@dataclass
class ValConfig:
    led_radius: float = 15.0  # players-over-LED region radius, px at 1080p
    boundary_tol: float = 2.0  # boundary F tolerance, px at 1080p
    every: int = 1  # validate every N epochs (and the last)
    overlays: int = 3  # prediction overlays logged per validation
    metric: str = "iou/player"  # checkpoint score (higher is better); several sources: `<source>/<metric>`
    # several sources: the score is the mean of these metrics (e.g. [acme/iou/player, epl/iou/led_board,
    # detection/recall/player]); empty = `metric`
    score_keys: list[str] = field(default_factory=list)
    tta: bool = False  # TTA (flip + scales) in validation
    tta_scales: list[float] = field(default_factory=lambda: [1.0])  # stored with the model; the flip at 1.0 gains what 0.75/1.25 add at 3x the views (README)


@dataclass
class RunOptions:
    name: str = "unet"  # run folder <out_dir>/<name>; an existing one is continued
    out_dir: str = "runs"
    num_workers: int = at_least(1, 1)
    gpus_per_worker: float = at_least(0.0, 0.0)  # > 0: NCCL + CUDA + AMP; 0: gloo on CPU
    cpus_per_worker: float = at_least(0.0, 1.0, above=True)  # also torch.set_num_threads in each worker
    batch_size: int = at_least(1, 8)  # per worker, per optimizer micro-step
    accum_steps: int = at_least(1, 1)  # gradient accumulation: optimizer step every N batches
    epochs: int = at_least(1, 20)
    samples_per_epoch: int = 0  # crops per epoch over all workers; 0 = one per training frame
    amp: bool = True  # mixed precision where a GPU is used (ignored on CPU)
    # worker restarts from the last checkpoint (FailureConfig). Above 1 because Ray 2.60 Train V2's
    # PlacementGroupCleaner removes a live run's placement group when the State API answers nothing
    # under load (`is_actor_alive` takes the empty answer for a dead controller): seen on a busy 2-core VM
    max_failures: int = 3
    keep_checkpoints: int = 2  # best by val.metric, plus always the latest
    resume: str = path_field()  # checkpoint directory to continue from (weights, optimizer, scheduler, epoch)
    # checkpoint directory whose model weights and epoch counter start this run, trained on with THIS
    # config's optimizer hyperparameters and lr schedule (a PBT exploit; `playerseg.train.loop.init_checkpoint`)
    init_from: str = path_field()
    # a model folder (or checkpoint / run folder, `Segmenter.load`) whose weights start the network:
    # fine-tuning from an earlier model, with this config's optimizer and schedule from epoch 0
    init_weights: str = path_field()
    # stop after the epoch that passes this many minutes of training (0 = none): that epoch is
    # validated and checkpointed like the last one, so a run with a budget ends in its best model
    time_budget_minutes: float = 0.0
    seed: int = 0
    loader_workers: int = 0  # DataLoader processes per worker
    cache: bool = True  # keep decoded, scaled frames in memory
    wandb_project: str = "playerseg"
    max_val_images: int = 0  # 0 = all validation frames
    inject_failure_epoch: int = -1  # fault-injection test hook: rank 0 dies once (os._exit) at this epoch


def add_run_arguments(p, batch_help: str = "batch per worker (run.batch_size)") -> None:
    """The flags every `playerseg train <family>` takes: dataset root and the Ray Train run options
    of a training config's `run` (each dest names its config field; config.from_args)."""
    p.add_argument("--data", dest="data.root", help="dataset root (data.root)")
    p.add_argument("--num-workers", dest="run.num_workers", type=int, help="Ray Train workers (run.num_workers)")
    p.add_argument("--gpus-per-worker", dest="run.gpus_per_worker", type=float,
                   help="GPUs per worker; 0 = CPU with gloo (run.gpus_per_worker)")
    p.add_argument("--cpus-per-worker", dest="run.cpus_per_worker", type=float,
                   help="CPUs (= torch threads) per worker")
    p.add_argument("--batch-size", dest="run.batch_size", type=int, help=batch_help)
    p.add_argument("--epochs", dest="run.epochs", type=int, help="run.epochs")
    p.add_argument("--out", dest="run.out_dir", help="runs folder (run.out_dir)")
    p.add_argument("--name", dest="run.name", help="run name: folder under --out; an existing run continues (run.name)")
    p.add_argument("--resume", dest="run.resume", help="checkpoint folder to start from (run.resume)")
    p.add_argument("--max-failures", dest="run.max_failures", type=int,
                   help="worker restarts from the last checkpoint")


@dataclass
class ExportConfig:
    dir: str = ""  # also write the best model here (e.g. models/unet_acme); "" = only <run>/export
    formats: list[str] = field(default_factory=lambda: ["safetensors", "torchscript"])  # + onnx, pt2
    half: bool = True  # safetensors weights in fp16


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    swa: SWAConfig = field(default_factory=SWAConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    input: InputConfig = field(default_factory=InputConfig)
    val: ValConfig = field(default_factory=ValConfig)
    run: RunOptions = field(default_factory=RunOptions)
    export: ExportConfig = field(default_factory=ExportConfig)
