"""Supervised pre-training of a backbone (Dhillon et al., ICLR 2020, section 4), resumable and DDP.

Recipe (the paper's defaults, all configurable in :class:`PretrainConfig`): cross-entropy with label
smoothing 0.1 on mixup batches (alpha 0.25), SGD with Nesterov momentum 0.9, weight decay 1e-4 on
convolution / linear weights only (none on batch-norm parameters or biases), batch 256, cosine
annealing with warm restarts **stepped every iteration** over cycles of ``(epochs, lr)`` (paper: 40
epochs from 0.1, then 80 from 0.01), augmentation by :class:`~anyshot.data.augment.Augmentation`
(flip where it makes sense, reflect-pad + random crop, brightness, contrast), CUDA autocast when on
a GPU (bfloat16 where supported, else float16 with a gradient scaler; off on the CPU).

Files: ``output`` is the **best** backbone so far (highest validation accuracy; the latest when
there is no validation split), an ordinary backbone checkpoint that
:func:`anyshot.backbones.load_backbone` reads. ``<stem>.last<suffix>`` (e.g.
``omniglot-conv4.last.pt``) is the latest backbone *and* the training state (optimiser, schedule
step, RNG state, epoch, best metric, history, config) in its ``extra["training_state"]``; both are
written atomically after every epoch. ``resume=True`` continues from it.

Determinism: every random draw of epoch ``e`` comes from generators seeded with ``(seed, e)``
(numpy PCG64 ``[seed, e]`` for the shuffling order and the mixup coefficients, a
``torch.Generator`` seeded from it for augmentation and mixup partners), so a resumed run replays
nothing and reaches the same weights as an uninterrupted one.

Distributed: under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1) the model is wrapped in
DistributedDataParallel (gloo on the CPU, nccl on GPUs). Every rank draws the same global batch of
``batch_size`` images (same order, same augmentation, same mixup), and rank ``r`` trains on its
``r``-th contiguous slice of ``batch_size / N`` images; gradients are averaged, so without
batch-norm the updates equal a single process's with the same global batch (batch-norm statistics
are per rank). Only rank 0 validates, logs and writes files. The last incomplete batch of an epoch
is dropped (every rank gets an equal shard).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from anyshot.backbones.architectures import build_backbone
from anyshot.backbones.base import Backbone
from anyshot.backbones.checkpoint import save_backbone
from anyshot.backbones.preprocessing import resolve_preprocessing
from anyshot.data.augment import Augmentation
from anyshot.data.images import Preprocessing
from anyshot.data.memory import MemoryImages
from anyshot.episodes import Episode, EpisodeSampler
from anyshot.errors import CheckpointError, ConfigurationError
from anyshot.evaluation.records import summarize
from anyshot.methods.support_init import SupportBasedInit
from anyshot.progress import progress_bar

__all__ = [
    "STATE_FORMAT",
    "PretrainConfig",
    "PretrainResult",
    "last_path",
    "lr_at",
    "mix_batch",
    "mixup_cross_entropy",
    "parameter_groups",
    "parse_cycles",
    "pretrain",
    "scaled_cycles",
]

STATE_FORMAT = "anyshot-pretrain-state"
STATE_VERSION = 1
PAPER_CYCLES: tuple[tuple[int, float], ...] = ((40, 0.1), (80, 0.01))
# Fields that may differ between a run and its resumption (where, not what, is trained).
_RESUMABLE_DIFFERENCES = ("data_root", "output", "device")


# --- configuration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pre-training run.

    Args:
        output: the best-checkpoint path (see the module docstring for the other file).
        dataset: ``"omniglot"``, ``"mini-imagenet"`` or ``"folder"`` (ignored when the caller
            passes the data to :func:`pretrain`).
        data_root: the dataset folder.
        split: training split (its classes are the pre-training classes).
        arch: ``"conv4"``, ``"resnet12"`` or ``"wrn28-10"``.
        image_size: input side in pixels; ``None``: the default for ``arch`` and ``dataset``
            (Omniglot 28, else the architecture's: 84), from
            :func:`~anyshot.backbones.preprocessing.resolve_preprocessing`. Always an ``int``
            after construction.
        channels: 1 (grey) or 3 (RGB); ``None``: the default (Omniglot 1, else 3), as above.
        cycles: ``((epochs, lr), ...)``: one cosine-annealing cycle per entry, restarting at ``lr``.
        batch_size: global batch (split across ranks under DDP).
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha: Beta(alpha, alpha) mixup coefficient; 0 turns mixup off.
        weight_decay: L2 on convolution and linear weights only.
        momentum: Nesterov momentum.
        augment: apply the augmentations at all.
        flip: random horizontal flips (off for characters).
        amp: mixed precision on CUDA devices (never used on the CPU).
        seed: initialisation, shuffling, augmentation, mixup and validation episodes.
        val_split: validation split, or ``None`` for none (then ``output`` is the last epoch).
        val_episodes, val_ways, val_shots, val_queries: the validation episodes (support-based
            initialisation accuracy, the same seeded episodes every epoch).
        embedding: the saved backbone's embedding: ``"logits"`` (paper) or ``"features"``.
        device: ``cpu``, ``cuda``, ...; default CUDA when available (``cuda:LOCAL_RANK`` under
            torchrun), else the CPU.
    """

    output: str
    dataset: str = "omniglot"
    data_root: str = ""
    split: str = "train"
    arch: str = "conv4"
    image_size: int | None = None
    channels: int | None = None
    cycles: tuple[tuple[int, float], ...] = PAPER_CYCLES
    batch_size: int = 256
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.25
    weight_decay: float = 1e-4
    momentum: float = 0.9
    augment: bool = True
    flip: bool = True
    amp: bool = True
    seed: int = 0
    val_split: str | None = "val"
    val_episodes: int = 200
    val_ways: int = 5
    val_shots: int = 1
    val_queries: int = 15
    embedding: str = "logits"
    device: str | None = None

    def __post_init__(self) -> None:
        if not self.cycles or any(e < 1 or lr <= 0 for e, lr in self.cycles):
            raise ConfigurationError(
                f"cycles must be a non-empty list of (epochs >= 1, lr > 0), got {self.cycles}"
            )
        if self.batch_size < 1:
            raise ConfigurationError(f"batch size must be positive, got {self.batch_size}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigurationError("label smoothing must lie in [0, 1)")
        if self.mixup_alpha < 0 or self.weight_decay < 0:
            raise ConfigurationError("mixup alpha and weight decay must be >= 0")
        object.__setattr__(self, "cycles", tuple((int(e), float(lr)) for e, lr in self.cycles))
        try:
            resolved = resolve_preprocessing(
                self.arch, image_size=self.image_size, channels=self.channels, dataset=self.dataset
            )
        except ValueError as error:
            raise ConfigurationError(str(error)) from error
        object.__setattr__(self, "image_size", resolved.image_size)
        object.__setattr__(self, "channels", resolved.channels)

    def preprocessing(self) -> Preprocessing:
        """How the training images are prepared: the configured size and channels, ``[-1, 1]``."""
        return resolve_preprocessing(self.arch, image_size=self.image_size, channels=self.channels)

    @property
    def epochs(self) -> int:
        """Total epochs: the sum of the cycles' lengths."""
        return sum(e for e, _ in self.cycles)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (stored in checkpoints); cycles as lists."""
        data = asdict(self)
        data["cycles"] = [[e, lr] for e, lr in self.cycles]
        return data

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """``"field: saved X, now Y"`` for each field that forbids resuming from ``stored``."""
        mine = self.to_dict()
        lines = []
        for key in sorted(set(mine) | set(stored)):
            if key in _RESUMABLE_DIFFERENCES:
                continue
            if _normal(mine.get(key)) != _normal(stored.get(key)):
                lines.append(f"{key}: saved {stored.get(key)!r}, now {mine.get(key)!r}")
        return lines


def _normal(value: Any) -> Any:
    """Lists and tuples compare alike."""
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value


def parse_cycles(text: str) -> tuple[tuple[int, float], ...]:
    """``"40:0.1,80:0.01"`` -> ``((40, 0.1), (80, 0.01))``.

    Raises:
        ConfigurationError: malformed text (the message shows the expected form).
    """
    cycles = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        epochs, sep, lr = part.partition(":")
        try:
            if not sep:
                raise ValueError(part)
            cycles.append((int(epochs), float(lr)))
        except ValueError:
            raise ConfigurationError(
                f"cannot read cycle {part!r}; write EPOCHS:LR pairs, e.g. 40:0.1,80:0.01"
            ) from None
    if not cycles:
        raise ConfigurationError("no cycles given; write EPOCHS:LR pairs, e.g. 40:0.1,80:0.01")
    return tuple(cycles)


def scaled_cycles(epochs: int) -> tuple[tuple[int, float], ...]:
    """The paper's two cycles (1/3 of the epochs from lr 0.1, 2/3 from 0.01) for ``epochs``."""
    if epochs < 1:
        raise ConfigurationError(f"epochs must be at least 1, got {epochs}")
    first = max(1, round(epochs / 3))
    if first >= epochs:
        return ((epochs, PAPER_CYCLES[0][1]),)
    return ((first, PAPER_CYCLES[0][1]), (epochs - first, PAPER_CYCLES[1][1]))


def last_path(output: str | os.PathLike[str]) -> Path:
    """The latest checkpoint + training state next to ``output`` (``x.pt`` -> ``x.last.pt``)."""
    path = Path(output)
    suffix = path.suffix or ".pt"
    return path.with_name(f"{path.stem if path.suffix else path.name}.last{suffix}")


# --- the pieces (public for tests and reuse) ---------------------------------------------------
def lr_at(step: int, steps_per_epoch: int, cycles: Sequence[tuple[int, float]]) -> float:
    """Learning rate of iteration ``step`` (0-based): cosine annealing with warm restarts.

    Within a cycle of ``L = epochs * steps_per_epoch`` iterations starting at ``s0`` with rate
    ``lr``: ``lr * (1 + cos(pi * (step - s0) / L)) / 2``. Past the last cycle: 0.
    """
    start = 0
    for epochs, lr in cycles:
        length = epochs * steps_per_epoch
        if step < start + length:
            return 0.5 * lr * (1.0 + math.cos(math.pi * (step - start) / length))
        start += length
    return 0.0


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two SGD parameter groups: ``"decay"`` (conv/linear weights) and ``"no_decay"``.

    Normalisation-layer parameters (batch-norm scale and shift) and every bias get no weight decay.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for layer in module.modules():
        for name, param in layer.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            if isinstance(layer, _NORMS) or name.endswith("bias") or param.dim() <= 1:
                no_decay.append(param)
            else:
                decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def mix_batch(images: torch.Tensor, lam: float, partner: torch.Tensor) -> torch.Tensor:
    """Mixup: ``lam * images + (1 - lam) * images[partner]``, ``[B, C, H, W]``."""
    return lam * images + (1.0 - lam) * images[partner]


def mixup_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    partner_targets: torch.Tensor,
    lam: float,
    smoothing: float,
) -> torch.Tensor:
    """Mean over the batch of ``lam CE_s(logits, y) + (1 - lam) CE_s(logits, y')``.

    ``CE_s`` is cross-entropy against the smoothed target ``(1 - s) onehot(y) + s / K``.
    ``logits`` ``[B, K]``; ``targets``, ``partner_targets`` ``[B]`` long. A scalar tensor.
    """
    first = F.cross_entropy(logits, targets, label_smoothing=smoothing)
    if lam == 1.0:
        return first
    second = F.cross_entropy(logits, partner_targets, label_smoothing=smoothing)
    return lam * first + (1.0 - lam) * second


# --- results -----------------------------------------------------------------------------------
@dataclass
class PretrainResult:
    """What a run produced.

    Attributes:
        best_path: the best backbone checkpoint (``config.output``).
        last_path: the latest backbone + training state.
        history: one dict per epoch: ``epoch`` (1-based), ``loss``, ``accuracy`` (train, mixup
            weighted), ``lr`` (at the epoch's end), ``val_accuracy``, ``val_ci95``, ``seconds``.
        best_epoch: 1-based epoch of ``best_path``.
        best_metric: its validation accuracy (``None`` without validation).
    """

    best_path: Path
    last_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float | None = None


# --- distributed context -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Ranks:
    rank: int
    world: int
    local_rank: int
    owns_group: bool

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_distributed(device: torch.device) -> _Ranks:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Ranks(0, 1, 0, False)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return _Ranks(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns
    )


def _pick_device(requested: str | None) -> torch.device:
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None and "WORLD_SIZE" in os.environ:
            device = torch.device("cuda", local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


# --- data --------------------------------------------------------------------------------------
def load_memory_split(
    config: PretrainConfig, split: str, *, show_progress: bool = False
) -> MemoryImages:
    """Decode split ``split`` of ``config.dataset`` into memory at the configured size."""
    from anyshot.data.registry import load_dataset

    dataset = load_dataset(config.dataset, config.data_root, split)
    return MemoryImages.from_dataset(dataset, config.preprocessing(), show_progress=show_progress)


# --- the loop ----------------------------------------------------------------------------------
class _Logits(nn.Module):
    """``backbone.logits`` as ``forward`` (what DDP wraps)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.logits(images)


def pretrain(
    config: PretrainConfig,
    *,
    train: MemoryImages | None = None,
    val: MemoryImages | None = None,
    backbone: Backbone | None = None,
    resume: bool = False,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> PretrainResult:
    """Pre-train a backbone with a classifier over the training classes.

    Args:
        config: the run (see :class:`PretrainConfig`).
        train: training images; default: ``config.split`` of ``config.dataset`` decoded.
        val: validation images; default: ``config.val_split`` decoded (none when it is ``None``).
        backbone: the network to train (must have a classifier with one output per training
            class); default ``build_backbone(config.arch, ...)`` initialised under ``config.seed``.
        resume: continue from the training state next to ``config.output``.
        show_progress: progress bars (rank 0 only).
        log: receives one line per epoch and notices (rank 0 only).
        on_epoch: called with each epoch's history record after its files are written.

    Under torchrun, a process group the caller started is used as is; otherwise one is started
    here and destroyed on return (so several runs in one process should share a caller's group:
    re-creating a group on the same torchrun store is not reliable).

    Returns:
        The files written and the per-epoch history.

    Raises:
        CheckpointError: ``resume`` without a readable, matching training state (the message
            lists the configuration differences).
        ConfigurationError: a training state exists but ``resume`` is false (no silent
            overwrite), or the batch does not split across the ranks.
    """
    device = _pick_device(config.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    ranks = _start_distributed(device)
    say = log if (log is not None and ranks.main) else (lambda _line: None)
    try:
        return _run(
            config,
            train,
            val,
            backbone,
            resume,
            show_progress and ranks.main,
            say,
            on_epoch if ranks.main else None,
            device,
            ranks,
        )
    finally:
        if ranks.owns_group:
            dist.destroy_process_group()


@dataclass
class _Progress:
    """Where training stands: what an epoch updates and the state file keeps."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int = 0


@dataclass
class _Trainer:
    """Everything an epoch needs: the network (and its DDP wrapper), optimiser, data, settings."""

    config: PretrainConfig
    backbone: Backbone
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp: bool
    amp_dtype: torch.dtype
    train: MemoryImages
    device: torch.device
    ranks: _Ranks

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train) // self.config.batch_size


def _run(
    config: PretrainConfig,
    train: MemoryImages | None,
    val: MemoryImages | None,
    backbone: Backbone | None,
    resume: bool,
    show_progress: bool,
    say: Callable[[str], None],
    on_epoch: Callable[[dict[str, Any]], None] | None,
    device: torch.device,
    ranks: _Ranks,
) -> PretrainResult:
    best_file = Path(config.output)
    state_file = last_path(best_file)
    _check_start(config, state_file, resume, ranks)
    stored = _read_state(state_file, config) if resume else None
    if train is None:
        say(f"decoding {config.dataset} {config.split!r} into memory ...")
        train = load_memory_split(config, config.split, show_progress=show_progress)
    if val is None and config.val_split:
        say(f"decoding {config.dataset} {config.val_split!r} into memory ...")
        val = load_memory_split(config, config.val_split, show_progress=show_progress)
    if len(train) // config.batch_size < 1:
        raise ConfigurationError(
            f"the training split has {len(train)} images, fewer than one batch of "
            f"{config.batch_size}; lower --batch-size"
        )
    trainer = _trainer(config, train, backbone, device, ranks)
    progress = _Progress()
    if stored is not None:
        progress = _restore(trainer, stored, state_file)
        say(f"resuming after epoch {progress.epoch} of {config.epochs} from {str(state_file)!r}")
    episodes = _validation_episodes(val, config) if val is not None and ranks.main else []
    for epoch in range(progress.epoch, config.epochs):
        started = time.perf_counter()
        totals = _train_epoch(trainer, epoch, progress, show_progress)
        if ranks.world > 1:
            dist.all_reduce(totals)
        progress.epoch = epoch + 1
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(totals[0] / totals[2]),
            "accuracy": float(totals[1] / totals[2]),
            "lr": lr_at(progress.step - 1, trainer.steps_per_epoch, config.cycles),
            "val_accuracy": None,
            "val_ci95": None,
        }
        if ranks.main:
            if episodes:
                summary = _validate(trainer.backbone, episodes, show_progress)
                record["val_accuracy"] = summary["accuracy_mean"]
                record["val_ci95"] = summary["accuracy_ci95"]
            record["seconds"] = time.perf_counter() - started
            _end_epoch(trainer, progress, record, best_file, state_file)
            say(_epoch_line(record, config.epochs, progress.best_epoch, progress.history))
            if on_epoch is not None:
                on_epoch(record)
        if ranks.world > 1:
            dist.barrier()
    history = progress.history if ranks.main else []
    return PretrainResult(best_file, state_file, history, progress.best_epoch, progress.best_metric)


def _check_start(config: PretrainConfig, state_file: Path, resume: bool, ranks: _Ranks) -> None:
    """Refuse a batch that does not split over the processes, or a state file without resume."""
    if config.batch_size % ranks.world:
        raise ConfigurationError(
            f"batch size {config.batch_size} does not split across {ranks.world} processes; "
            f"use a multiple of {ranks.world}"
        )
    if not resume and state_file.exists():
        raise ConfigurationError(
            f"a training state already exists at {str(state_file)!r}: pass --resume to continue "
            "that run, or delete it (and the best checkpoint) to start afresh"
        )


def _trainer(
    config: PretrainConfig,
    train: MemoryImages,
    backbone: Backbone | None,
    device: torch.device,
    ranks: _Ranks,
) -> _Trainer:
    """The network (built from the seed unless given), its optimiser and mixed precision."""
    if backbone is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            backbone = build_backbone(
                config.arch,
                image_size=config.image_size,
                channels=config.channels,
                num_classes=train.num_classes,
                embedding=config.embedding,
                class_names=list(train.class_names),
            )
    backbone.preprocessing = train.preprocessing
    backbone.to(device)
    optimizer = torch.optim.SGD(
        parameter_groups(backbone, config.weight_decay),
        lr=config.cycles[0][1],
        momentum=config.momentum,
        nesterov=config.momentum > 0,
    )
    amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    model: nn.Module = _Logits(backbone)
    if ranks.world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return _Trainer(
        config, backbone, model, optimizer, scaler, amp, amp_dtype, train, device, ranks
    )


def _restore(
    trainer: _Trainer, stored: tuple[dict[str, torch.Tensor], Any], state_file: Path
) -> _Progress:
    """Load a saved state (weights, optimiser, scaler, RNG) into ``trainer``; its progress."""
    weights, state = stored
    try:
        trainer.backbone.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(
            f"the weights in {str(state_file)!r} do not fit the network being trained: "
            f"{str(error).splitlines()[0]}"
        ) from error
    trainer.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    return _Progress(
        epoch=int(state["epoch"]),
        step=int(state["step"]),
        history=list(state["history"]),
        best_metric=state["best_metric"],
        best_epoch=int(state["best_epoch"]),
    )


def _train_epoch(
    trainer: _Trainer, epoch: int, progress: _Progress, show_progress: bool
) -> torch.Tensor:
    """One epoch of SGD steps (``progress.step`` advances); ``[loss sum, correct, count]``
    of this process's share (float64)."""
    config, train = trainer.config, trainer.train
    steps = trainer.steps_per_epoch
    rng = np.random.Generator(np.random.PCG64([config.seed, epoch]))
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    order = torch.from_numpy(rng.permutation(len(train)))
    augmentation = Augmentation(flip=config.flip) if config.augment else None
    local = config.batch_size // trainer.ranks.world
    lo = trainer.ranks.rank * local
    trainer.model.train()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct sum, count (local)
    bar = progress_bar(
        total=steps, desc=f"epoch {epoch + 1}/{config.epochs}", enabled=show_progress, unit="batch"
    )
    try:
        for b in range(steps):
            index = order[b * config.batch_size : (b + 1) * config.batch_size]
            images, targets = train.batch(index), train.labels[index]
            if augmentation is not None:
                images = augmentation(images, train.preprocessing, generator)
            lam, partner_targets = 1.0, targets
            if config.mixup_alpha > 0:
                lam = float(rng.beta(config.mixup_alpha, config.mixup_alpha))
                partner = torch.randperm(len(index), generator=generator)
                images = mix_batch(images, lam, partner)
                partner_targets = targets[partner]
            lr = lr_at(progress.step, steps, config.cycles)
            loss, correct, count = _step(
                trainer,
                images[lo : lo + local],
                targets[lo : lo + local],
                partner_targets[lo : lo + local],
                lam,
                lr,
            )
            progress.step += 1
            totals += torch.tensor([loss * count, correct, count], dtype=torch.float64)
            bar.set_postfix(
                loss=f"{totals[0] / totals[2]:.3f}",
                acc=f"{100 * totals[1] / totals[2]:.1f}%",
                lr=f"{lr:.4f}",
                refresh=False,
            )
            bar.update(1)
    finally:
        bar.close()
    return totals


def _step(
    trainer: _Trainer,
    images: torch.Tensor,
    targets: torch.Tensor,
    partner_targets: torch.Tensor,
    lam: float,
    lr: float,
) -> tuple[float, float, int]:
    """One SGD step on ``[B, C, H, W]`` (mixed) images; ``(loss, correct, B)``."""
    device = trainer.device
    x = images.to(device, non_blocking=True)
    y, y2 = targets.to(device), partner_targets.to(device)
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(device.type, dtype=trainer.amp_dtype, enabled=trainer.amp):
        logits = trainer.model(x)
    config = trainer.config
    loss = mixup_cross_entropy(logits.float(), y, y2, lam, config.label_smoothing)
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scaler.scale(loss).backward()
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    with torch.no_grad():
        predicted = logits.argmax(1)
        correct = lam * (predicted == y).sum() + (1 - lam) * (predicted == y2).sum()
    return loss.item(), float(correct), len(y)


def _end_epoch(
    trainer: _Trainer,
    progress: _Progress,
    record: dict[str, Any],
    best_file: Path,
    state_file: Path,
) -> None:
    """Keep the epoch's record; save the best checkpoint when it improved and the state."""
    config = trainer.config
    progress.history.append(record)
    metric = record["val_accuracy"]
    if metric is None or progress.best_metric is None or metric > progress.best_metric:
        progress.best_metric, progress.best_epoch = metric, progress.epoch
        save_backbone(
            trainer.backbone,
            best_file,
            extra={
                "pretrain": _summary(
                    config, progress.history, progress.best_epoch, progress.best_metric
                )
            },
        )
    state = {
        "format": STATE_FORMAT,
        "format_version": STATE_VERSION,
        "config": config.to_dict(),
        "epoch": progress.epoch,
        "step": progress.step,
        "best_metric": progress.best_metric,
        "best_epoch": progress.best_epoch,
        "history": progress.history,
        "optimizer": trainer.optimizer.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler.is_enabled() else None,
        "rng": {"torch": torch.get_rng_state()},
    }
    save_backbone(trainer.backbone, state_file, extra={"training_state": state})


def _summary(
    config: PretrainConfig,
    history: list[dict[str, Any]],
    best_epoch: int,
    best_metric: float | None,
) -> dict[str, Any]:
    """What the best checkpoint records about its training."""
    return {
        "config": config.to_dict(),
        "epoch": best_epoch,
        "val_accuracy": best_metric,
        "history": history,
    }


def _epoch_line(
    record: dict[str, Any], epochs: int, best_epoch: int, history: list[dict[str, Any]]
) -> str:
    seconds = [h["seconds"] for h in history if "seconds" in h]
    remaining = (epochs - record["epoch"]) * (sum(seconds) / max(len(seconds), 1))
    val = (
        f", val {100 * record['val_accuracy']:.2f}% ± {100 * record['val_ci95']:.2f}"
        if record["val_accuracy"] is not None
        else ""
    )
    return (
        f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f}, train acc "
        f"{100 * record['accuracy']:.2f}%, lr {record['lr']:.5f}{val}, "
        f"{record['seconds']:.0f} s (best epoch {best_epoch}; ETA {remaining / 60:.1f} min)"
    )


def _read_state(path: Path, config: PretrainConfig) -> tuple[dict[str, torch.Tensor], Any]:
    """The saved weights and training state, checked against ``config``.

    Raises:
        CheckpointError: missing, unreadable or foreign file, or a different configuration.
    """
    if not path.exists():
        raise CheckpointError(
            f"--resume: no training state at {str(path)!r} (it is written after each epoch next "
            "to --output); run without --resume to start a new run"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise CheckpointError(
            f"cannot read the training state {str(path)!r}: corrupt, truncated or not a torch "
            f"file ({type(error).__name__}). Delete it and start a new run, or restore a copy."
        ) from error
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise CheckpointError(
            f"{str(path)!r} is not an anyshot checkpoint, so the run cannot be resumed from it; "
            "start a new run with another --output"
        )
    metadata = {"extra": data.get("extra") or {}}
    state = metadata["extra"].get("training_state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a backbone checkpoint without an anyshot training state, so the "
            "run cannot be resumed from it; start a new run with another --output"
        )
    if int(state.get("format_version", 0)) > STATE_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has training-state version {state.get('format_version')}; this "
            f"anyshot reads up to {STATE_VERSION}. Upgrade anyshot."
        )
    differences = config.differences(dict(state.get("config") or {}))
    if differences:
        raise CheckpointError(
            f"cannot resume from {str(path)!r}: the configuration differs from the saved run's: "
            + "; ".join(differences)
            + ". Resume with the saved settings, or start a new run with another --output."
        )
    return dict(data["state_dict"]), state


# --- validation --------------------------------------------------------------------------------
def _validation_episodes(val: MemoryImages, config: PretrainConfig) -> list[Episode]:
    """The seeded validation episodes (images decoded once, reused every epoch)."""
    sampler = EpisodeSampler(
        val.labels.numpy(),
        ways=config.val_ways,
        shots=config.val_shots,
        queries=config.val_queries,
        seed=config.seed,
    )
    episodes = []
    for spec in sampler.take(config.val_episodes):
        support = [i for items in spec.support for i in items]
        query = [i for items in spec.query for i in items]
        episodes.append(
            Episode(
                val.batch(support),
                [c for c, items in zip(spec.classes, spec.support, strict=True) for _ in items],
                val.batch(query),
                [c for c, items in zip(spec.classes, spec.query, strict=True) for _ in items],
            )
        )
    return episodes


def _validate(backbone: Backbone, episodes: list[Episode], show_progress: bool) -> dict[str, Any]:
    """Support-based-initialisation accuracy over ``episodes`` (mean, std, 95% CI)."""
    method = SupportBasedInit()
    accuracies = []
    for episode in progress_bar(episodes, desc="validation", enabled=show_progress, unit="episode"):
        logits = method(backbone, episode)
        targets = episode.query_targets
        assert targets is not None
        accuracies.append(float((logits.argmax(1) == targets).float().mean()))
    return dict(summarize(accuracies))
