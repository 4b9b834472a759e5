"""``anyshot pretrain``: supervised pre-training of a backbone (see :mod:`anyshot.pretrain`).

Runs the same under ``torchrun --nproc-per-node N -m anyshot pretrain ...`` (DDP;
``--batch-size`` is the global batch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from anyshot.cli.options import add_dataset_argument, positive_int
from anyshot.errors import ConfigurationError

__all__ = ["add_commands", "config_from_args", "run_pretrain"]

EPILOG = """\
files: OUTPUT is the best backbone so far (highest 5-way 1-shot support-init validation
  accuracy; the latest epoch without --val-split); OUTPUT's stem + .last.pt (e.g. x.last.pt) is the
  latest backbone plus the training state, written atomically after every epoch; --resume
  continues from it and reaches the same weights as an uninterrupted run.
schedule: cosine annealing with warm restarts, stepped every iteration; --cycles 40:0.1,80:0.01
  is the paper's (120 epochs); --epochs N alone scales it to N/3 epochs from 0.1, 2N/3 from 0.01.

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
    data = parser.add_argument_group("data")
    add_dataset_argument(data)
    data.add_argument("--data-root", type=Path, required=True, help="the dataset's folder")
    data.add_argument("--split", default="train", help="training split (default: train)")
    data.add_argument(
        "--val-split",
        help="validation split, or 'none' (default: val for omniglot / mini-imagenet, none for "
        "folder)",
    )
    data.add_argument("--val-episodes", type=positive_int, default=200)
    data.add_argument("--image-size", type=positive_int, help="default 28 for omniglot, else 84")
    data.add_argument("--channels", type=int, choices=[1, 3], help="default 1 for omniglot, else 3")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", choices=["conv4", "resnet12", "wrn28-10"], default="conv4")
    model.add_argument(
        "--embedding",
        choices=["logits", "features"],
        default="logits",
        help="what the saved backbone embeds with (paper: logits)",
    )
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, help="total epochs (see 'schedule')")
    optim.add_argument("--cycles", help="EPOCHS:LR,... (default 40:0.1,80:0.01)")
    optim.add_argument("--batch-size", type=positive_int, default=256, help="global batch")
    optim.add_argument("--label-smoothing", type=float, default=0.1)
    optim.add_argument("--mixup-alpha", type=float, default=0.25, help="0 turns mixup off")
    optim.add_argument("--weight-decay", type=float, default=1e-4)
    optim.add_argument("--momentum", type=float, default=0.9)
    optim.add_argument(
        "--no-flip",
        dest="flip",
        action="store_false",
        default=None,
        help="no horizontal flips (the default for omniglot)",
    )
    optim.add_argument("--flip", dest="flip", action="store_true", help="random horizontal flips")
    optim.add_argument(
        "--no-augment", dest="augment", action="store_false", help="no augmentation at all"
    )
    optim.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mixed precision on CUDA (never on the CPU)",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    run.add_argument("--resume", action="store_true", help="continue from OUTPUT's .last.pt")
    run.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    run.add_argument("--output", type=Path, required=True, help="best checkpoint file (.pt)")
    parser.set_defaults(run=run_pretrain)


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~anyshot.pretrain.PretrainConfig` the parsed arguments describe.

    Raises:
        ConfigurationError: ``--epochs`` disagrees with ``--cycles``.
    """
    from anyshot.pretrain import PAPER_CYCLES, PretrainConfig, parse_cycles, scaled_cycles

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
