"""``anyshot pretrain``: supervised pre-training of a backbone (see :mod:`anyshot.pretrain`).

Runs the same under ``torchrun --nproc-per-node N -m anyshot pretrain ...`` (DDP;
``--batch-size`` is the global batch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from anyshot.backbones.preprocessing import DATASET_INPUTS, INPUT_SPECS
from anyshot.cli.options import add_dataset_argument, device, output_file, positive_int
from anyshot.errors import ConfigurationError
from anyshot.methods.finetune import field_default
from anyshot.pretrain import PAPER_CYCLES, PretrainConfig

__all__ = ["add_commands", "config_from_args", "run_pretrain"]

#: The architectures ``anyshot pretrain`` trains from scratch.
ARCHS = ("conv4", "resnet12", "wrn28-10")


def _default(name: str) -> Any:
    """The default of :class:`~anyshot.pretrain.PretrainConfig`'s field ``name``: the one source
    of ``pretrain``'s defaults and of what its help says they are."""
    return field_default(PretrainConfig, name)


def _cycles_text(cycles: tuple[tuple[int, float], ...]) -> str:
    """``((40, 0.1), (80, 0.01))`` -> ``"40:0.1,80:0.01"`` (what ``--cycles`` takes)."""
    return ",".join(f"{epochs}:{lr:g}" for epochs, lr in cycles)


def _input_default(attribute: str) -> str:
    """``--image-size`` / ``--channels`` defaults in words: Omniglot's, else the architectures'."""
    dataset = ", ".join(
        f"{getattr(spec, attribute)} for {name}" for name, spec in DATASET_INPUTS.items()
    )
    values = sorted({getattr(INPUT_SPECS[arch], attribute) for arch in ARCHS})
    return f"{dataset}, else {', '.join(str(v) for v in values)}"


#: The default schedule, as ``--cycles`` writes it, and its length in epochs.
PAPER_SCHEDULE = _cycles_text(PAPER_CYCLES)
PAPER_EPOCHS = sum(epochs for epochs, _ in PAPER_CYCLES)


EPILOG = f"""\
files: OUTPUT is the best backbone so far (highest 5-way 1-shot support-init validation
  accuracy; the latest epoch without --val-split); OUTPUT's stem + .last.pt (e.g. x.last.pt) is the
  latest backbone plus the training state, written atomically after every epoch; --resume
  continues from it and reaches the same weights as an uninterrupted run.
schedule: cosine annealing with warm restarts, stepped every iteration; --cycles
  {PAPER_SCHEDULE} is the paper's and the default ({PAPER_EPOCHS} epochs); --epochs N alone
  scales it to N/3 epochs from 0.1, 2N/3 from 0.01.

examples:
  anyshot pretrain --dataset omniglot --data-root ../shared/data/omniglot --split train \\
      --arch conv4 --image-size 28 --channels 1 --epochs 12 --output ckpt/omniglot-conv4.pt
  anyshot pretrain ... --resume          # after a crash, the same command plus --resume
  torchrun --nproc-per-node 2 -m anyshot pretrain ...   # DDP; --batch-size is global
  anyshot evaluate --dataset omniglot --data-root ../shared/data/omniglot \\
      --backbone ckpt/omniglot-conv4.pt --ways 5 --shots 1 --output r.json
"""


def add_commands(sub: Any) -> None:
    """Register ``pretrain`` on the subparsers ``sub``."""
    parser = sub.add_parser(
        "pretrain",
        help="pre-train a backbone on a dataset's training classes (resumable, DDP-ready)",
        description="Supervised pre-training (Dhillon et al. 2020): label-smoothed cross-entropy "
        "on mixup batches, SGD Nesterov with weight decay on weights only, cosine annealing "
        "with warm restarts, flip / pad-crop / brightness / contrast augmentation, AMP on CUDA; "
        "5-way 1-shot support-init validation every epoch, best checkpoint kept.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_data_options(parser)
    _add_model_options(parser)
    _add_optimisation_options(parser)
    _add_run_options(parser)
    parser.set_defaults(run=run_pretrain)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """The dataset, splits and input size."""
    data = parser.add_argument_group("data")
    add_dataset_argument(data)
    data.add_argument("--data-root", type=Path, required=True, help="the dataset's folder")
    data.add_argument(
        "--split",
        default=_default("split"),
        help=f"training split (default: {_default('split')})",
    )
    data.add_argument(
        "--val-split",
        help="validation split, or 'none' (default: val for omniglot / mini-imagenet, none for "
        "folder)",
    )
    data.add_argument(
        "--val-episodes",
        type=positive_int,
        default=_default("val_episodes"),
        help="5-way 1-shot support-init episodes of each validation (default: "
        f"{_default('val_episodes')})",
    )
    data.add_argument(
        "--image-size",
        type=positive_int,
        help=f"input side in pixels (default: {_input_default('image_size')})",
    )
    data.add_argument(
        "--channels",
        type=int,
        choices=[1, 3],
        help=f"1 = grey, 3 = RGB (default: {_input_default('channels')})",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The architecture and the saved embedding."""
    model = parser.add_argument_group("model")
    model.add_argument(
        "--arch",
        choices=list(ARCHS),
        default=_default("arch"),
        help=f"architecture (default: {_default('arch')})",
    )
    model.add_argument(
        "--embedding",
        choices=["logits", "features"],
        default=_default("embedding"),
        help="what the saved backbone embeds with (default: "
        f"{_default('embedding')}, as in the paper)",
    )


def _add_optimisation_options(parser: argparse.ArgumentParser) -> None:
    """The schedule, loss, optimiser and augmentation."""
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, help="total epochs (see 'schedule')")
    optim.add_argument(
        "--cycles",
        help=f"EPOCHS:LR,... (default: {_cycles_text(_default('cycles'))}, see 'schedule')",
    )
    optim.add_argument(
        "--batch-size",
        type=positive_int,
        default=_default("batch_size"),
        help=f"global batch (default: {_default('batch_size')})",
    )
    for name, extra in (
        ("label_smoothing", ""),
        ("mixup_alpha", "; 0 turns mixup off"),
        ("weight_decay", ", on weights only"),
        ("momentum", ", Nesterov"),
    ):
        optim.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=_default(name),
            help=f"default: {_default(name)}{extra}",
        )
    optim.add_argument(
        "--no-flip",
        dest="flip",
        action="store_false",
        default=None,
        help="no horizontal flips (the default for omniglot)",
    )
    optim.add_argument(
        "--flip",
        dest="flip",
        action="store_true",
        help="random horizontal flips (the default for every dataset but omniglot)",
    )
    optim.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=_default("augment"),
        help="no augmentation at all (default: flip where it applies, pad-crop, brightness, "
        "contrast)",
    )
    optim.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=_default("amp"),
        help="mixed precision on CUDA, never on the CPU (default: "
        f"{'on' if _default('amp') else 'off'})",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Device, seed, threads, resuming, output."""
    run = parser.add_argument_group("run")
    run.add_argument(
        "--device", type=device, help="cpu, cuda, cuda:1 ... (default: cuda when available)"
    )
    run.add_argument(
        "--seed", type=int, default=_default("seed"), help=f"default: {_default('seed')}"
    )
    run.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    run.add_argument("--resume", action="store_true", help="continue from OUTPUT's .last.pt")
    run.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    run.add_argument("--output", type=output_file, required=True, help="best checkpoint file (.pt)")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~anyshot.pretrain.PretrainConfig` the parsed arguments describe.

    Raises:
        ConfigurationError: ``--epochs`` disagrees with ``--cycles``.
    """
    from anyshot.pretrain import parse_cycles, scaled_cycles

    omniglot = args.dataset == "omniglot"
    if args.cycles:
        cycles = parse_cycles(args.cycles)
        if args.epochs is not None and args.epochs != sum(e for e, _ in cycles):
            raise ConfigurationError(
                f"--epochs {args.epochs} disagrees with --cycles {args.cycles} "
                f"({sum(e for e, _ in cycles)} epochs); give one of them"
            )
    elif args.epochs is not None:
        cycles = scaled_cycles(args.epochs)
    else:
        cycles = PAPER_CYCLES
    if args.val_split is None:
        val_split: str | None = None if args.dataset == "folder" else "val"
    else:
        val_split = None if args.val_split.lower() == "none" else args.val_split
    return PretrainConfig(
        output=str(args.output),
        dataset=args.dataset,
        data_root=str(args.data_root),
        split=args.split,
        arch=args.arch,
        image_size=args.image_size,
        channels=args.channels,
        cycles=cycles,
        batch_size=args.batch_size,
        label_smoothing=args.label_smoothing,
        mixup_alpha=args.mixup_alpha,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        augment=args.augment,
        flip=(not omniglot) if args.flip is None else args.flip,
        amp=args.amp,
        seed=args.seed,
        val_split=val_split,
        val_episodes=args.val_episodes,
        embedding=args.embedding,
        device=args.device,
    )


def run_pretrain(args: argparse.Namespace) -> int:
    """``anyshot pretrain``: train, then print where the checkpoints are."""
    import os

    from anyshot.pretrain import pretrain

    config = config_from_args(args)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    quiet = args.quiet or not main_rank

    def log(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    log(
        f"pre-training {config.arch} at {config.image_size} px, {config.channels} channel(s), "
        f"{config.epochs} epochs, cycles {list(config.cycles)}, batch {config.batch_size}"
    )
    result = pretrain(config, resume=args.resume, show_progress=not quiet, log=log)
    if main_rank:
        best = (
            f"val accuracy {100 * result.best_metric:.2f}%"
            if result.best_metric is not None
            else "no validation"
        )
        print(
            f"best checkpoint (epoch {result.best_epoch}, {best}): {result.best_path}\n"
            f"latest checkpoint and training state: {result.last_path}"
        )
    return 0
