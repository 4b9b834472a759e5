"""The ``anyshot`` command: a thin layer over the Python API.

    anyshot evaluate --dataset omniglot --data-root ../shared/data/omniglot --split test \\
        --ways 5 --shots 1 --queries 15 --episodes 100 --method transductive --scope head \\
        --backbone efficientnet-lite0 --image-size 84 --output results.json
    anyshot demo
    anyshot classify --support photos/support --query photos/new --output predictions.csv
    anyshot fit --support photos/support --output model.pt   (then: predict, suggest)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from anyshot import __version__
from anyshot.cli_practitioner import PRACTITIONER_COMMANDS, add_practitioner_commands
from anyshot.cli_pretrain import PRETRAIN_COMMANDS, add_pretrain_command
from anyshot.cli_research import (
    EPILOG_PROTOCOLS,
    RESEARCH_COMMANDS,
    add_protocol_options,
    add_report_command,
    add_speed_options,
    ways_list,
)
from anyshot.data.registry import available_datasets
from anyshot.errors import AnyshotError

EPILOG_EVALUATE = """\
examples:
  # 5-way 1-shot on Omniglot test with the offline ImageNet EfficientNet-Lite0, head scope
  anyshot evaluate --dataset omniglot --data-root ../shared/data/omniglot --split test \\
      --ways 5 --shots 1 --queries 15 --episodes 200 --method transductive --scope head \\
      --backbone efficientnet-lite0 --image-size 84 --output omniglot-5w1s.json

  # unbalanced supports: way 1 gets 1 shot, way 2 gets 5, ...
  anyshot evaluate --dataset mini-imagenet --data-root ../shared/data/mini-imagenet \\
      --split val --ways 5 --shots 1,5,10,1,2 --method support-init --output imb.json

  # a pre-trained checkpoint instead of a named architecture
  anyshot evaluate ... --backbone benchmarks/checkpoints/omniglot-conv4.pt

The output JSON holds {"summary": {accuracy_mean, accuracy_std, accuracy_ci95, episodes, ...},
"config": {...}, "episodes": [{accuracy, ways, shots, queries, seconds, ...}, ...]}; accuracies
are fractions in [0, 1]. The same --seed gives the same episodes on any machine.
"""


#: The dataset formats anyshot reads.
DATASET_CHOICES = available_datasets()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _shots(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shots takes an integer or a comma-separated list of integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"every shot count must be >= 1, got {text!r}")
    return values


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("method")
    group.add_argument(
        "--method",
        choices=["support-init", "finetune", "transductive"],
        default="transductive",
        help="support-init: cosine class means, no training; finetune: + support cross-entropy; "
        "transductive: + a query term (default)",
    )
    group.add_argument(
        "--scope",
        choices=["all", "last", "head"],
        default="head",
        help="what fine-tuning trains: all parameters (paper, slow), last stage + classifier, "
        "or the classifier on frozen features (default, fast)",
    )
    from anyshot.methods.presets import RECOMMENDED

    def _tuned(name: str) -> str:
        return str(getattr(RECOMMENDED, name))

    group.add_argument(
        "--epochs", type=int, help=f"fine-tuning epochs (paper: 25; tuned head: {_tuned('epochs')})"
    )
    group.add_argument(
        "--lr", type=float, help=f"Adam learning rate (paper: 5e-5; tuned head: {_tuned('lr')})"
    )
    group.add_argument(
        "--temperature",
        type=float,
        help=f"cosine-logit temperature T (paper: 1; tuned head: {_tuned('temperature')})",
    )
    group.add_argument(
        "--entropy-weight",
        type=float,
        help="lambda, weight of the query prediction entropy (paper: 1; tuned head: "
        f"{_tuned('entropy_weight')})",
    )
    group.add_argument(
        "--balance-weight",
        type=float,
        help="weight of TIM's class-balance term, the entropy of the mean query prediction "
        f"(paper: 0; tuned head: {_tuned('balance_weight')}, with --adaptive-balance)",
    )
    group.add_argument(
        "--adaptive-balance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use the balance term only when a first run's predicted query classes look "
        "equally frequent (an empirical-Bayes Dirichlet test; paper: no; tuned head: "
        f"{_tuned('adaptive_balance')})",
    )
    group.add_argument(
        "--likelihood-weight",
        type=float,
        help="weight of the queries' log-likelihood under a mixture of the classes with "
        f"re-estimated proportions (paper: 0; tuned head: {_tuned('likelihood_weight')})",
    )
    group.add_argument(
        "--prior-count",
        type=float,
        help="pseudo-count per class of those proportions (tuned head: "
        f"{_tuned('prior_count')}; large = uniform)",
    )
    group.add_argument(
        "--center",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="centre embeddings on the episode's mean unit embedding (paper: no; tuned head: "
        f"{_tuned('center')})",
    )
    group.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="augment images while fine-tuning (default: on for --scope all only)",
    )
    group.add_argument(
        "--no-relu", dest="relu", action="store_false", help="do not rectify embeddings"
    )


def _add_backbone_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backbone")
    group.add_argument(
        "--backbone",
        default="efficientnet-lite0",
        help="architecture name (efficientnet-lite0 [ImageNet weights, offline], conv4, "
        "resnet12, wrn28-10) or a checkpoint file (default: efficientnet-lite0)",
    )
    group.add_argument(
        "--image-size", type=_positive_int, help="input side in pixels (default: the backbone's)"
    )
    group.add_argument(
        "--embedding",
        choices=["features", "logits"],
        help="use pooled features or the pre-training logits as the embedding",
    )
    group.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    group.add_argument("--batch-size", type=_positive_int, default=64, help="images per batch")
    group.add_argument("--threads", type=_positive_int, help="CPU threads for torch")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``anyshot`` command."""
    parser = argparse.ArgumentParser(
        prog="anyshot",
        description="Few-shot image classification with any number of shots: support-based "
        "initialisation and transductive fine-tuning (Dhillon et al., ICLR 2020).",
    )
    parser.add_argument("--version", action="version", version=f"anyshot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a method on seeded few-shot episodes of a dataset",
        description="Evaluate a few-shot method on N-way K-shot Q-query episodes sampled with a "
        "seed, and write one record per episode plus mean, std and 95% CI as JSON.",
        epilog=EPILOG_EVALUATE + "\n" + EPILOG_PROTOCOLS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = evaluate.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        required=True,
        help="dataset format: " + ", ".join(DATASET_CHOICES),
    )
    data.add_argument(
        "--data-root",
        required=True,
        type=Path,
        help="omniglot: folder with images_*.zip and splits/; mini-imagenet: folder with "
        "{split}.csv and images/ (or {split}/<wnid>/*.jpg); tiered-imagenet: "
        "{split}_images_png.pkl and {split}_labels.pkl; cifar-fs: CIFAR-100 python pickles and "
        "the Bertinetto split files; fc100: CIFAR-100 python pickles; folder: "
        "ROOT/<class>/<images> (or ROOT/<split>/<class>/...)",
    )
    data.add_argument("--split", choices=["train", "val", "test"], default="test")
    episodes = evaluate.add_argument_group("episodes")
    episodes.add_argument("--ways", type=ways_list, help="classes per episode (default 5): 5,10,20")
    episodes.add_argument(
        "--shots", type=_shots, help="shots per class (default 1), or one per way: 1,5,10"
    )
    episodes.add_argument("--queries", type=_positive_int, default=15, help="queries per class")
    episodes.add_argument("--episodes", type=_positive_int, default=100)
    episodes.add_argument("--seed", type=int, default=0, help="seed of episodes and fine-tuning")
    add_protocol_options(evaluate)
    add_speed_options(evaluate)
    _add_method_options(evaluate)
    _add_backbone_options(evaluate)
    evaluate.add_argument("--output", type=Path, required=True, help="results JSON file")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser(
        "demo",
        help="a short real evaluation: support-init vs transductive fine-tuning on Omniglot",
        description="Compare support-based initialisation with transductive fine-tuning (head "
        "scope) on 5-way 1-shot Omniglot test episodes, with the offline ImageNet-pretrained "
        "EfficientNet-Lite0 at 84 px. Uses ../shared/data/omniglot when present, else the "
        "small Omniglot sample shipped inside anyshot.",
    )
    demo.add_argument("--episodes", type=_positive_int, default=20)
    demo.add_argument("--data-root", type=Path, help="Omniglot folder (default: see above)")
    demo.add_argument("--output", type=Path, help="also write both results to this JSON file")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    add_practitioner_commands(sub)
    add_report_command(sub)
    add_pretrain_command(sub)
    return parser


def _method_options(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Keyword options of the method ``args`` describe.

    At scope ``head``, settings not given on the command line come from
    :data:`anyshot.methods.recommended.HEAD_SETTINGS` (tuned on validation classes); at scopes
    ``last`` / ``all`` from the method's dataclass (the paper's values).
    """
    from anyshot.methods.finetune import QUERY_FIELDS as QUERY_SETTINGS
    from anyshot.methods.presets import RECOMMENDED

    HEAD_SETTINGS = {
        k: getattr(RECOMMENDED, k) for k in ("temperature", "lr", "epochs", *QUERY_SETTINGS)
    }

    options: dict[str, Any] = {
        "relu": args.relu,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    if args.method == "support-init":
        if args.temperature is not None:
            options["temperature"] = args.temperature
        return options
    transductive = args.method == "transductive"
    if not transductive:
        given_query = [k for k in QUERY_SETTINGS if getattr(args, k, None) is not None]
        if given_query:
            flags = ", ".join("--" + k.replace("_", "-") for k in given_query)
            raise AnyshotError(f"{flags} apply to --method transductive only")
    if args.scope == "head":
        options.update(
            {k: v for k, v in HEAD_SETTINGS.items() if transductive or k not in QUERY_SETTINGS}
        )
    given = {
        "scope": args.scope,
        "epochs": args.epochs,
        "lr": args.lr,
        "temperature": args.temperature,
        "augment": args.augment,
        "seed": seed,
    }
    if transductive:
        given.update({k: getattr(args, k, None) for k in QUERY_SETTINGS})
    options.update({k: v for k, v in given.items() if v is not None})
    return options


def _summary_line(name: str, summary: dict[str, Any]) -> str:
    return (
        f"{name}: accuracy {100 * summary['accuracy_mean']:.2f}% "
        f"± {100 * summary['accuracy_ci95']:.2f} (95% CI), "
        f"std {100 * summary['accuracy_std']:.2f}, {summary['episodes']} episodes, "
        f"{summary['seconds_per_episode_median']:.3f} s/episode (median)"
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from anyshot.cli_research import run_evaluate

    return run_evaluate(args)


def _run_demo(args: argparse.Namespace) -> int:
    from anyshot.demo import run_demo

    report = run_demo(
        episodes=args.episodes,
        data_root=args.data_root,
        seed=args.seed,
        show_progress=not args.quiet,
    )
    print(report.text)
    if args.output:
        from anyshot.io import write_json

        write_json(args.output, report.results)
        print(f"results written to {args.output}")
    return 0


COMMANDS = {
    "evaluate": _run_evaluate,
    "demo": _run_demo,
    **PRACTITIONER_COMMANDS,
    **RESEARCH_COMMANDS,
    **PRETRAIN_COMMANDS,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anyshot`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        status = COMMANDS[args.command](args)
    except AnyshotError as error:
        print(f"anyshot: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"anyshot: error: {error}", file=sys.stderr)
        return 2
    if not getattr(args, "quiet", False) and args.command not in PRACTITIONER_COMMANDS:
        print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["build_parser", "main"]
