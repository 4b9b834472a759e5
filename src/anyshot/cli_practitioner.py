"""The practitioner's commands: ``classify``, ``fit``, ``predict``, ``suggest``.

Registered on the ``anyshot`` parser by :func:`add_practitioner_commands`; each runner takes the
parsed arguments and returns the exit status. Output files are written atomically; the summary
(classes, counts, skipped files, time) goes to stderr when the predictions go to stdout.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from anyshot.errors import AnyshotError, ConfigurationError

__all__ = ["PRACTITIONER_COMMANDS", "add_practitioner_commands"]

EPILOG_CLASSIFY = """\
examples:
  # photos/support/<class>/... labelled images (1 or more per class), photos/new/ to classify
  anyshot classify --support photos/support --query photos/new --output predictions.csv

  # print CSV to stdout, the summary to stderr; three alternatives per image
  anyshot classify --support photos/support --query photos/new --top-k 3 > predictions.csv

  # JSON (records plus the summary), the plain class-mean classifier, on a GPU
  anyshot classify --support photos/support --query photos/new --format json \\
      --output predictions.json --method support-init --device cuda

The support folder holds one sub-folder per class, named after the class, with its images at
any depth (.jpg .jpeg .png .bmp .gif .tif .tiff .webp; grey, RGBA, CMYK, 16-bit, palette and
EXIF-rotated photos are converted). Hidden files, non-image files, broken links and (unless
--strict) corrupt images are skipped and listed in the summary; identical files in two classes
are reported as a warning. The query images take part in the fitting (transductive fine-tuning:
their prediction entropy is minimised), so classify all the images you want labelled at once.

CSV columns: path,label,confidence then label_2,confidence_2,... (the --top-k most probable
classes), one row per readable query image, sorted by path.
"""

EPILOG_FIT = """\
examples:
  anyshot fit --support photos/support --output model.pt
  # unlabelled images of the same kind improve the fit (transductive fine-tuning)
  anyshot fit --support photos/support --unlabeled photos/unsorted --output model.pt
  # a backbone checkpoint (e.g. from pre-training) instead of the ImageNet EfficientNet-Lite0
  anyshot fit --support photos/support --backbone my-backbone.pt --output model.pt

The model file holds the backbone (fine-tuned for --scope last/all), the trained classifier,
the class names and the settings: `anyshot predict --model model.pt ...` needs nothing else.
Memory stays bounded for any number of images: they are embedded --batch-size at a time and
only their embeddings are kept.
"""

EPILOG_PREDICT = """\
examples:
  anyshot predict --model model.pt photos/new --output predictions.csv
  anyshot predict --model model.pt a.jpg b.png more-photos/ --top-k 1 > predictions.csv
  anyshot predict --model model.pt photos/new --format json --output predictions.json

Folders are searched at any depth. Columns as for `anyshot classify`: path,label,confidence,
label_2,confidence_2,...; rows sorted by path. Unreadable images are skipped and listed in the
summary (or stop the run with --strict).
"""

EPILOG_SUGGEST = """\
examples:
  # the 20 images the model is least sure about: label these next, then fit again
  anyshot suggest --model model.pt --unlabeled photos/unsorted -n 20 --output to-label.csv
  anyshot suggest --model model.pt --unlabeled photos/unsorted --by margin -n 50

--by entropy: score = entropy of the predicted probabilities in nats (0 = certain, log K = no
idea); highest first. --by margin: score = probability of the best class minus that of the
second (0 = a tie); lowest first. CSV columns: path,score,predicted_label.
"""

METHOD_CHOICES = ("transductive", "finetune", "support-init")


# --- argument helpers ---------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def _tuned(name: str) -> str:
    """The validation-tuned head setting ``name``, for help texts."""
    from anyshot.methods.presets import RECOMMENDED

    value = getattr(RECOMMENDED, name)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options that choose and train the model (classify, fit)."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--backbone",
        default="efficientnet-lite0",
        help="architecture name (efficientnet-lite0: ImageNet weights, no download; conv4, "
        "resnet12, wrn28-10: random weights) or an anyshot backbone checkpoint file "
        "(default: efficientnet-lite0)",
    )
    group.add_argument(
        "--method",
        choices=METHOD_CHOICES,
        default="transductive",
        help="transductive: fine-tune on the labelled images' cross-entropy plus a term on the "
        "unlabelled (or query) images (default: their likelihood under a mixture of the "
        "classes); finetune: labelled images only; "
        "support-init: cosine class means, no training",
    )
    group.add_argument(
        "--scope",
        choices=["head", "last", "all"],
        help="what fine-tuning trains: head = the classifier on cached embeddings (default, "
        "fast, any number of images); last = last backbone stage too; all = every parameter "
        "(the paper; slow on a CPU)",
    )
    group.add_argument(
        "--epochs",
        type=_positive_int,
        help=f"fine-tuning epochs (default: {_tuned('epochs')} for --scope head, 25 for last/all)",
    )
    group.add_argument(
        "--lr",
        type=_positive_float,
        help=f"Adam learning rate (default: {_tuned('lr')} for --scope head, tuned on "
        "validation classes; 5e-5, the paper's, for last/all)",
    )
    group.add_argument(
        "--temperature",
        type=_positive_float,
        help=f"cosine-logit temperature T (default: {_tuned('temperature')} for head and "
        "support-init, tuned on validation classes; 1, the paper's, for last/all); lower = "
        "more confident",
    )
    group.add_argument(
        "--balance-weight",
        type=_non_negative_float,
        help=f"weight of TIM's class-balance term in --method transductive (default: "
        f"{_tuned('balance_weight')}, used only when the predicted classes of the images to "
        "classify look equally frequent: a first run without it decides). The default query "
        "term, a class mixture's likelihood with estimated proportions, assumes no balance; "
        "0 turns the balance term off",
    )
    group.add_argument(
        "--adaptive-balance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"--method transductive: use the balance term only when a first run's predicted "
        f"classes look equally frequent (default: {_tuned('adaptive_balance')}); "
        "--no-adaptive-balance always uses it (best when you know the classes are balanced)",
    )
    group.add_argument(
        "--image-size", type=_positive_int, help="input side in pixels (default: the backbone's)"
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the fine-tuning (default 0)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options of every command: device, batch size, strictness, verbosity."""
    group = parser.add_argument_group("run")
    group.add_argument("--device", help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    group.add_argument(
        "--batch-size",
        type=_positive_int,
        default=64,
        help="images decoded and embedded at once; bounds memory (default 64)",
    )
    group.add_argument(
        "--threads",
        type=_positive_int,
        help="CPU threads for torch (default: all cores; on a machine busy with other work, "
        "--threads 1 can be several times faster)",
    )
    group.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first image that cannot be read (corrupt, truncated, too large, "
        "permission denied) instead of skipping it",
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars and no summary")


def _add_output_options(parser: argparse.ArgumentParser, *, default_top_k: int) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--output",
        type=Path,
        help="predictions file (default: CSV on stdout, summary on stderr)",
    )
    group.add_argument(
        "--format",
        choices=["csv", "json"],
        help="csv (default; or from the --output suffix .json) or json: records plus summary",
    )
    group.add_argument(
        "--top-k",
        type=_positive_int,
        default=default_top_k,
        help=f"how many most probable classes per image (default {default_top_k})",
    )


def add_practitioner_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Register ``classify``, ``fit``, ``predict`` and ``suggest`` on the subparsers."""
    formatter = argparse.RawDescriptionHelpFormatter
    classify = sub.add_parser(
        "classify",
        help="label a folder of images from a few labelled examples per class",
        description="Classify the images of --query from labelled examples in --support "
        "(one sub-folder per class, any number of images each): transductive fine-tuning of a "
        "cosine classifier on an ImageNet-pretrained backbone (Dhillon et al., ICLR 2020), "
        "with settings tuned on validation classes.",
        epilog=EPILOG_CLASSIFY,
        formatter_class=formatter,
    )
    data = classify.add_argument_group("data")
    data.add_argument("--support", type=Path, required=True, help="SUPPORT/<class>/<images>")
    data.add_argument("--query", type=Path, required=True, help="folder of images to classify")
    _add_model_options(classify)
    _add_output_options(classify, default_top_k=3)
    _add_run_options(classify)

    fit = sub.add_parser(
        "fit",
        help="train a classifier on a folder per class and save it",
        description="Fit a few-shot classifier on --support (one sub-folder per class, any "
        "number of images each) and optional unlabelled images, and save it as one "
        "self-contained model file for `anyshot predict` and `anyshot suggest`.",
        epilog=EPILOG_FIT,
        formatter_class=formatter,
    )
    data = fit.add_argument_group("data")
    data.add_argument("--support", type=Path, required=True, help="SUPPORT/<class>/<images>")
    data.add_argument(
        "--unlabeled",
        type=Path,
        help="folder of unlabelled images of the same kind (used by --method transductive)",
    )
    fit.add_argument("--output", type=Path, required=True, help="model file to write (.pt)")
    _add_model_options(fit)
    _add_run_options(fit)

    predict = sub.add_parser(
        "predict",
        help="classify images with a saved model",
        description="Classify image files and folders (searched at any depth) with a model "
        "written by `anyshot fit`.",
        epilog=EPILOG_PREDICT,
        formatter_class=formatter,
    )
    predict.add_argument("--model", type=Path, required=True, help="model file from anyshot fit")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGES_OR_DIRS")
    _add_output_options(predict, default_top_k=3)
    _add_run_options(predict)

    suggest = sub.add_parser(
        "suggest",
        help="which unlabelled images to label next (most uncertain first)",
        description="Rank unlabelled images by how uncertain a saved model is about them, most "
        "uncertain first: labelling those next teaches the model the most (active learning "
        "by uncertainty sampling).",
        epilog=EPILOG_SUGGEST,
        formatter_class=formatter,
    )
    suggest.add_argument("--model", type=Path, required=True, help="model file from anyshot fit")
    suggest.add_argument("--unlabeled", type=Path, required=True, help="folder of images")
    suggest.add_argument(
        "-n", type=_positive_int, default=20, help="how many images to suggest (default 20)"
    )
    suggest.add_argument(
        "--by",
        choices=["entropy", "margin"],
        default="entropy",
        help="uncertainty score (default entropy; see below)",
    )
    suggest.add_argument(
        "--output", type=Path, help="CSV file (default: stdout, summary on stderr)"
    )
    _add_run_options(suggest)


# --- building the estimator ---------------------------------------------------------------
def build_method(args: argparse.Namespace) -> Any:
    """The method the options describe (the recommended one when none is given).

    At scope ``head`` (and for support-init's temperature) unspecified settings come from
    :data:`anyshot.methods.recommended.HEAD_SETTINGS`, tuned on validation classes; at scopes
    ``last`` / ``all`` from the method's dataclass (the paper's values).
    """
    from anyshot.methods import FineTuning, SupportBasedInit, TransductiveFineTuning
    from anyshot.methods.finetune import QUERY_FIELDS as QUERY_SETTINGS
    from anyshot.methods.presets import RECOMMENDED

    HEAD_SETTINGS = {
        k: getattr(RECOMMENDED, k) for k in ("temperature", "lr", "epochs", *QUERY_SETTINGS)
    }

    given = {
        "temperature": args.temperature,
        "lr": args.lr,
        "epochs": args.epochs,
        "balance_weight": args.balance_weight,
        "adaptive_balance": args.adaptive_balance,
    }
    if args.method == "support-init":
        if args.scope is not None or any(given[k] is not None for k in given if k != "temperature"):
            raise ConfigurationError(
                "--scope, --epochs, --lr, --balance-weight and --adaptive-balance apply to "
                "--method transductive or finetune; support-init does no training"
            )
        temperature = args.temperature or float(HEAD_SETTINGS["temperature"])
        return SupportBasedInit(temperature=temperature, device=args.device)
    scope = args.scope or "head"
    transductive = args.method == "transductive"
    if not transductive and (args.balance_weight is not None or args.adaptive_balance is not None):
        raise ConfigurationError(
            "--balance-weight and --adaptive-balance apply to --method transductive only"
        )
    options: dict[str, Any] = {"scope": scope, "seed": args.seed, "device": args.device}
    if scope == "head":
        options.update(
            {k: v for k, v in HEAD_SETTINGS.items() if transductive or k not in QUERY_SETTINGS}
        )
    options.update({k: v for k, v in given.items() if v is not None})
    if transductive:
        if scope == "head" and all(v is None for v in given.values()):
            return dataclasses.replace(RECOMMENDED, seed=args.seed, device=args.device)
        return TransductiveFineTuning(**options)
    return FineTuning(**options)


def _classifier(args: argparse.Namespace) -> Any:
    from anyshot.classifier import FewShotClassifier

    return FewShotClassifier(
        backbone=args.backbone,
        method=build_method(args),
        image_size=args.image_size,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        show_progress=not args.quiet,
    )


# --- output -------------------------------------------------------------------------------
def _top_k(row: np.ndarray, classes: Sequence[Hashable], k: int) -> list[tuple[Hashable, float]]:
    """The ``k`` most probable ``(label, probability)`` of one row, ties broken by class order."""
    order = sorted(range(len(classes)), key=lambda j: (-row[j], j))[:k]
    return [(classes[j], float(row[j])) for j in order]


def prediction_records(
    paths: Sequence[str], probabilities: np.ndarray, classes: Sequence[Hashable], top_k: int
) -> list[dict[str, Any]]:
    """One record per image, sorted by path: path, label, confidence, top_k alternatives."""
    records = []
    for path, row in sorted(zip(paths, probabilities, strict=True), key=lambda pr: pr[0]):
        best = _top_k(row, classes, top_k)
        records.append(
            {
                "path": path,
                "label": best[0][0],
                "confidence": best[0][1],
                "top_k": [{"label": label, "confidence": p} for label, p in best],
            }
        )
    return records


def predictions_csv(records: Sequence[dict[str, Any]], top_k: int, n_classes: int) -> str:
    """CSV text: ``path,label,confidence,label_2,confidence_2,...`` (k = min(top_k, K))."""
    k = min(top_k, n_classes)
    header = ["path", "label", "confidence"]
    for rank in range(2, k + 1):
        header += [f"label_{rank}", f"confidence_{rank}"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        row: list[str] = [record["path"]]
        for item in record["top_k"][:k]:
            row += [str(item["label"]), f"{item['confidence']:.6f}"]
        writer.writerow(row)
    return buffer.getvalue()


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.output is not None and args.output.suffix.lower() == ".json":
        return "json"
    return "csv"


def _write(path: Path | None, text: str) -> None:
    """Atomically to ``path``, or to stdout."""
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from anyshot.io import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as error:
        raise AnyshotError(f"cannot write {str(path)!r}: {error.strerror or error}") from error


def _summary_stream(args: argparse.Namespace) -> TextIO:
    return sys.stderr if args.output is None else sys.stdout


def _say(args: argparse.Namespace, lines: Sequence[str]) -> None:
    if args.quiet:
        return
    stream = _summary_stream(args)
    for line in lines:
        print(line, file=stream)


class _Reporter:
    """The ``on_unreadable`` callback: records each unreadable image in its scan report.

    Args:
        reports: path -> ``(IntakeReport, label)``; label ``""`` for unlabelled images.

    Attributes:
        dropped: the paths reported so far.
    """

    def __init__(self, reports: dict[str, tuple[Any, str]]) -> None:
        self.reports = reports
        self.dropped: set[str] = set()

    def __call__(self, item: Any) -> None:
        report, label = self.reports[item.source]
        report.skip(item.source, item.kind, item.reason, label=label)
        self.dropped.add(item.source)

    def kept(self, paths: Sequence[str]) -> list[str]:
        """``paths`` without the dropped ones, in order."""
        return [p for p in paths if p not in self.dropped]


def _predictions_output(
    args: argparse.Namespace,
    records: list[dict[str, Any]],
    classes: Sequence[Hashable],
    summary: dict[str, Any],
) -> None:
    if _output_format(args) == "json":
        text = json.dumps({"predictions": records, "summary": summary}, indent=2) + "\n"
    else:
        text = predictions_csv(records, args.top_k, len(classes))
    _write(args.output, text)


def _fit_summary(model: Any) -> dict[str, Any]:
    method = model.method_
    return {
        "classes": [c for c in model.classes_],
        "method": type(method).__name__,
        "scope": getattr(method, "scope", None),
        "backbone": getattr(model.network_, "arch", None),
        "image_size": model.preprocessing_.image_size,
    }


# --- runners ------------------------------------------------------------------------------
def _run_classify(args: argparse.Namespace) -> int:
    from anyshot.data.intake import scan_images, scan_support

    start = time.perf_counter()
    support = scan_support(args.support, strict=args.strict)
    query = scan_images([args.query], strict=args.strict)
    model = _classifier(args)
    where = dict(zip(support.paths, ((support.report, c) for c in support.labels), strict=True))
    where.update({p: (query.report, "") for p in query.paths})
    reporter = _Reporter(where)
    probabilities, kept = model.classify(
        support.paths,
        support.labels,
        query.paths,
        on_unreadable=None if args.strict else reporter,
    )
    kept_paths = [query.paths[i] for i in kept]
    records = prediction_records(kept_paths, probabilities, model.classes_, args.top_k)
    seconds = time.perf_counter() - start
    summary = {
        **_fit_summary(model),
        "support": support.report.to_dict(),
        "query": query.report.to_dict(),
        "seconds": seconds,
    }
    _predictions_output(args, records, model.classes_, summary)
    lines = [
        *support.report.summary_lines("support"),
        *query.report.summary_lines("query"),
        f"classified {len(records)} images into {len(model.classes_)} classes "
        f"({_method_words(model)})",
    ]
    if args.output is not None:
        lines.append(f"predictions written to {args.output}")
    lines.append(f"time: {seconds:.1f} s")
    _say(args, lines)
    return 0


def _run_fit(args: argparse.Namespace) -> int:
    from anyshot.data.intake import scan_images, scan_support

    start = time.perf_counter()
    support = scan_support(args.support, strict=args.strict)
    unlabeled = scan_images([args.unlabeled], strict=args.strict) if args.unlabeled else None
    model = _classifier(args)
    where = dict(zip(support.paths, ((support.report, c) for c in support.labels), strict=True))
    if unlabeled is not None:
        where.update({p: (unlabeled.report, "") for p in unlabeled.paths})
    model.fit(
        support.paths,
        support.labels,
        unlabeled.paths if unlabeled is not None else None,
        on_unreadable=None if args.strict else _Reporter(where),
    )
    try:
        model.save(args.output)
    except OSError as error:
        raise AnyshotError(
            f"cannot write {str(args.output)!r}: {error.strerror or error}"
        ) from error
    lines = [*support.report.summary_lines("support")]
    if unlabeled is not None:
        lines += unlabeled.report.summary_lines("unlabeled")
    lines += [
        f"fitted {len(model.classes_)} classes ({_method_words(model)})",
        f"model written to {args.output}",
        f"time: {time.perf_counter() - start:.1f} s",
    ]
    _say(args, lines)
    return 0


def _load(args: argparse.Namespace) -> Any:
    from anyshot.classifier import FewShotClassifier

    model = FewShotClassifier.load(args.model, device=args.device)
    model.batch_size = args.batch_size
    model.show_progress = not args.quiet
    return model


def _run_predict(args: argparse.Namespace) -> int:
    from anyshot.data.intake import scan_images

    start = time.perf_counter()
    model = _load(args)
    images = scan_images(args.images, strict=args.strict)
    reporter = _Reporter({p: (images.report, "") for p in images.paths})
    probabilities = model.predict_proba(
        images.paths, on_unreadable=None if args.strict else reporter
    )
    records = prediction_records(
        reporter.kept(images.paths), probabilities, model.classes_, args.top_k
    )
    seconds = time.perf_counter() - start
    summary = {**_fit_summary(model), "images": images.report.to_dict(), "seconds": seconds}
    _predictions_output(args, records, model.classes_, summary)
    lines = [
        *images.report.summary_lines("images"),
        f"classified {len(records)} images into {len(model.classes_)} classes "
        f"({', '.join(str(c) for c in model.classes_[:20])}"
        f"{', ...' if len(model.classes_) > 20 else ''})",
    ]
    if args.output is not None:
        lines.append(f"predictions written to {args.output}")
    lines.append(f"time: {seconds:.1f} s")
    _say(args, lines)
    return 0


def uncertainty(probabilities: np.ndarray, by: str) -> np.ndarray:
    """Per-row uncertainty score ``[N]``: entropy (nats; high = uncertain) or margin (p1 - p2;
    low = uncertain)."""
    if by == "entropy":
        clipped = np.clip(probabilities, 1e-300, 1.0)
        return np.asarray(-(probabilities * np.log(clipped)).sum(axis=1))
    if by == "margin":
        top = np.sort(probabilities, axis=1)[:, ::-1]
        second = top[:, 1] if top.shape[1] > 1 else np.zeros(len(top))
        return np.asarray(top[:, 0] - second)
    raise ConfigurationError(f"--by must be entropy or margin, got {by!r}")


def _run_suggest(args: argparse.Namespace) -> int:
    from anyshot.data.intake import scan_images

    start = time.perf_counter()
    model = _load(args)
    images = scan_images([args.unlabeled], strict=args.strict)
    reporter = _Reporter({p: (images.report, "") for p in images.paths})
    probabilities = model.predict_proba(
        images.paths, on_unreadable=None if args.strict else reporter
    )
    kept = reporter.kept(images.paths)
    scores = uncertainty(probabilities, args.by)
    predicted = probabilities.argmax(axis=1)
    sign = -1.0 if args.by == "entropy" else 1.0
    order = sorted(range(len(kept)), key=lambda i: (sign * scores[i], kept[i]))[: args.n]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "score", "predicted_label"])
    for i in order:
        writer.writerow([kept[i], f"{scores[i]:.6f}", str(model.classes_[int(predicted[i])])])
    _write(args.output, buffer.getvalue())
    lines = [
        *images.report.summary_lines("unlabeled"),
        f"suggested {len(order)} of {len(kept)} images to label next (by {args.by}, most "
        "uncertain first)",
    ]
    if args.output is not None:
        lines.append(f"suggestions written to {args.output}")
    lines.append(f"time: {time.perf_counter() - start:.1f} s")
    _say(args, lines)
    return 0


def _method_words(model: Any) -> str:
    method = model.method_
    name = type(method).__name__
    scope = getattr(method, "scope", None)
    return f"{name}, scope {scope}" if scope else name


def _guarded(runner: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Ctrl-C: exit 130 with a one-line message (outputs are atomic: nothing half-written)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return runner(args)
        except KeyboardInterrupt:
            print("anyshot: interrupted; no output file was written", file=sys.stderr)
            return 130

    return run


PRACTITIONER_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "classify": _guarded(_run_classify),
    "fit": _guarded(_run_fit),
    "predict": _guarded(_run_predict),
    "suggest": _guarded(_run_suggest),
}
