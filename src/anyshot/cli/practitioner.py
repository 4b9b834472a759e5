"""The practitioner's commands: ``classify``, ``fit``, ``predict``, ``suggest``.

Registered on the ``anyshot`` parser by :func:`add_commands`; each runner takes the parsed
arguments and returns the exit status. Data (predictions, suggestions) go to ``--output``,
written atomically, or to stdout; the summary (classes, counts, skipped files, duplicates, time)
always goes to stderr, so capturing either stream never mixes the two.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anyshot.cli.options import (
    IMAGE_SIZE_HELP,
    add_backbone_options,
    add_embedding_options,
    add_method_options,
    add_run_options,
    embedding_settings,
    method_from_args,
    output_file,
    positive_int,
    preprocessing_overrides,
)
from anyshot.cli.unknown import (
    UNKNOWN_EPILOG,
    add_unknown_options,
    threshold_words,
    unknown_settings,
    unknown_summary,
)
from anyshot.data.files import EXTENSIONS
from anyshot.errors import AnyshotError, ConfigurationError
from anyshot.methods.presets import RECOMMENDED

__all__ = ["add_commands", "prediction_records", "predictions_csv", "uncertainty"]

#: ``--quiet`` of these commands.
QUIET = "no progress bars and no summary"

#: Below ``MIN_QUERIES + QUERIES_PER_SHOT * shots`` query images per class they appear to hold,
#: the default method fine-tunes on the labelled images alone.
MIN_QUERIES = RECOMMENDED.min_queries_per_class
QUERIES_PER_SHOT = RECOMMENDED.queries_per_shot

EPILOG_CLASSIFY = (
    f"""\
examples:
  # photos/support/<class>/... labelled images (1 or more per class), photos/new/ to classify
  anyshot classify --support photos/support --query photos/new --output predictions.csv

  # print CSV to stdout, the summary to stderr; three alternatives per image
  anyshot classify --support photos/support --query photos/new --top-k 3 > predictions.csv

  # JSON (records plus the summary), the plain class-mean classifier, on a GPU
  anyshot classify --support photos/support --query photos/new --format json \\
      --output predictions.json --method support-init --device cuda

  # characters, digits, scans: unlike ImageNet photos, so --scope auto (the default) trains the
  # whole network when the budget allows; give it up to 5 minutes (the summary says what ran)
  anyshot classify --support glyphs/support --query glyphs/new --time-budget 300

The support folder holds one sub-folder per class, named after the class, with its images at any
depth: {EXTENSIONS} files
(grey, RGBA, CMYK, 16-bit, palette and EXIF-rotated photos are converted). Hidden files,
non-image files, broken links and (unless --strict) corrupt images are skipped and listed in
the summary; identical files are reported as a warning wherever they are (two classes, one
class twice, the query folder at any depths, or the support and the query). The query images
take part in the fitting (transductive fine-tuning; --method above says what the default
does), so classify all the images you want labelled at once: with fewer than {MIN_QUERIES:g} +
{QUERIES_PER_SHOT:g} x (labelled images per class) query images for each class they appear to
hold (the classes the trained classifier predicts for them), the default leaves them out and
fine-tunes on the labelled images alone (as --method finetune does).

CSV columns: path,label,class,confidence then label_2,confidence_2,... (the --top-k most
probable classes), then outlier_score; one row per readable query image, sorted by path. label
is class, or unknown for an image flagged as none of the classes; class is always the most
probable class and confidence its probability, calibrated on validation classes for support-init
(a temperature that follows the labelled images per class), for the default whenever it
trains the classifier on frozen embeddings, and for the network --scope auto trains when the
classes look alike to the frozen backbone (1.38 x shots^0.07; README, "Confidences");
--method finetune's and --scope last / all's (the paper's settings) are not calibrated.

"""
    + UNKNOWN_EPILOG
)

EPILOG_FIT = (
    """\
examples:
  anyshot fit --support photos/support --output model.pt
  # unlabelled images of the same kind improve the fit (transductive fine-tuning)
  anyshot fit --support photos/support --unlabeled photos/unsorted --output model.pt
  # a backbone checkpoint (e.g. from pre-training) instead of the ImageNet EfficientNet-Lite0
  anyshot fit --support photos/support --backbone my-backbone.pt --output model.pt

The model file holds the backbone (fine-tuned for --scope last/all), the trained classifier,
the class names and the settings: `anyshot predict --model model.pt ...` needs nothing else.
Memory stays bounded for any number of images: they are embedded --batch-size at a time and
only their embeddings are kept. The model also keeps the class means of the labelled images
and what sets the unknown threshold (--unknown options: the defaults of `anyshot predict`).

"""
    + UNKNOWN_EPILOG
)

EPILOG_PREDICT = (
    """\
examples:
  anyshot predict --model model.pt photos/new --output predictions.csv
  anyshot predict --model model.pt a.jpg b.png more-photos/ --top-k 1 > predictions.csv
  anyshot predict --model model.pt photos/new --format json --output predictions.json

Folders are searched at any depth. Columns as for `anyshot classify`: path,label,class,
confidence,label_2,confidence_2,...,outlier_score; rows sorted by path. Unreadable images are
skipped and listed in the summary (or stop the run with --strict).

"""
    + UNKNOWN_EPILOG
)

EPILOG_SUGGEST = """\
examples:
  # the 20 images the model is least sure about: label these next, then fit again
  anyshot suggest --model model.pt --unlabeled photos/unsorted -n 20 --output to-label.csv
  anyshot suggest --model model.pt --unlabeled photos/unsorted --by margin -n 50

--by entropy: score = entropy of the predicted probabilities in nats (0 = certain, log K = no
idea); highest first. --by margin: score = probability of the best class minus that of the
second (0 = a tie); lowest first. CSV columns: path,score,predicted_label.
"""


# --- options ----------------------------------------------------------------------------------
def _add_output_options(parser: argparse.ArgumentParser, *, default_top_k: int) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--output",
        type=output_file,
        help="predictions file (default: stdout); the summary always goes to stderr",
    )
    group.add_argument(
        "--format",
        choices=["csv", "json"],
        help="csv (default; or from the --output suffix .json) or json: records plus summary",
    )
    group.add_argument(
        "--top-k",
        type=positive_int,
        default=default_top_k,
        help=f"how many most probable classes per image (default {default_top_k})",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The backbone, the method and its settings, the seed (classify, fit)."""
    add_backbone_options(parser, image_size_help=IMAGE_SIZE_HELP)
    add_method_options(parser, auto=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fine-tuning (default 0)")


def add_commands(sub: Any) -> None:
    """Register ``classify``, ``fit``, ``predict`` and ``suggest`` on the subparsers ``sub``."""
    _add_classify(sub)
    _add_fit(sub)
    _add_predict(sub)
    _add_suggest(sub)


def _add_classify(sub: Any) -> None:
    classify = sub.add_parser(
        "classify",
        help="label a folder of images from a few labelled examples per class",
        description="Classify the images of --query from labelled examples in --support "
        "(one sub-folder per class, any number of images each): transductive fine-tuning of a "
        "cosine classifier on an ImageNet-pretrained backbone (Dhillon et al., ICLR 2020), "
        "with settings tuned on validation classes.",
        epilog=EPILOG_CLASSIFY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = classify.add_argument_group("data")
    data.add_argument("--support", type=Path, required=True, help="SUPPORT/<class>/<images>")
    data.add_argument("--query", type=Path, required=True, help="folder of images to classify")
    _add_model_options(classify)
    _add_output_options(classify, default_top_k=3)
    add_unknown_options(classify, saved=False)
    add_embedding_options(classify)
    add_run_options(classify, strict=True, quiet=QUIET)
    classify.set_defaults(run=_guarded(_run_classify), timed=False)


def _add_fit(sub: Any) -> None:
    fit = sub.add_parser(
        "fit",
        help="train a classifier on a folder per class and save it",
        description="Fit a few-shot classifier on --support (one sub-folder per class, any "
        "number of images each) and optional unlabelled images, and save it as one "
        "model file for `anyshot predict` and `anyshot suggest`.",
        epilog=EPILOG_FIT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = fit.add_argument_group("data")
    data.add_argument("--support", type=Path, required=True, help="SUPPORT/<class>/<images>")
    data.add_argument(
        "--unlabeled",
        type=Path,
        help="folder of unlabelled images of the same kind (used by --method transductive)",
    )
    fit.add_argument("--output", type=output_file, required=True, help="model file to write (.pt)")
    _add_model_options(fit)
    add_unknown_options(fit, saved=False)
    add_embedding_options(fit)
    add_run_options(fit, strict=True, quiet=QUIET)
    fit.set_defaults(run=_guarded(_run_fit), timed=False)


def _add_predict(sub: Any) -> None:
    predict = sub.add_parser(
        "predict",
        help="classify images with a saved model",
        description="Classify image files and folders (searched at any depth) with a model "
        "written by `anyshot fit`.",
        epilog=EPILOG_PREDICT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("--model", type=Path, required=True, help="model file from anyshot fit")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGES_OR_DIRS")
    _add_output_options(predict, default_top_k=3)
    add_unknown_options(predict, saved=True)
    add_embedding_options(predict)
    add_run_options(predict, strict=True, quiet=QUIET)
    predict.set_defaults(run=_guarded(_run_predict), timed=False)


def _add_suggest(sub: Any) -> None:
    suggest = sub.add_parser(
        "suggest",
        help="which unlabelled images to label next (most uncertain first)",
        description="Rank unlabelled images by how uncertain a saved model is about them, most "
        "uncertain first: labelling those next teaches the model the most (active learning "
        "by uncertainty sampling).",
        epilog=EPILOG_SUGGEST,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    suggest.add_argument("--model", type=Path, required=True, help="model file from anyshot fit")
    suggest.add_argument("--unlabeled", type=Path, required=True, help="folder of images")
    suggest.add_argument(
        "-n", type=positive_int, default=20, help="how many images to suggest (default 20)"
    )
    suggest.add_argument(
        "--by",
        choices=["entropy", "margin"],
        default="entropy",
        help="uncertainty score (default entropy; see below)",
    )
    suggest.add_argument(
        "--output",
        type=output_file,
        help="CSV file (default: stdout); the summary always goes to stderr",
    )
    add_embedding_options(suggest)
    add_run_options(suggest, strict=True, quiet=QUIET)
    suggest.set_defaults(run=_guarded(_run_suggest), timed=False)


# --- building the estimator ---------------------------------------------------------------
def _classifier(args: argparse.Namespace) -> Any:
    from anyshot.classifier import FewShotClassifier

    return FewShotClassifier(
        backbone=args.backbone,
        method=method_from_args(args),
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        show_progress=not args.quiet,
        **unknown_settings(args),
        **embedding_settings(args),
        **preprocessing_overrides(args),
    )


# --- output -------------------------------------------------------------------------------
def _top_k(row: np.ndarray, classes: Sequence[Hashable], k: int) -> list[tuple[Hashable, float]]:
    """The ``k`` most probable ``(label, probability)`` of one row, ties broken by class order."""
    order = sorted(range(len(classes)), key=lambda j: (-row[j], j))[:k]
    return [(classes[j], float(row[j])) for j in order]


def prediction_records(
    paths: Sequence[str],
    probabilities: np.ndarray,
    classes: Sequence[Hashable],
    top_k: int,
    scores: np.ndarray,
    unknown: tuple[np.ndarray, Hashable],
) -> list[dict[str, Any]]:
    """One record per image, sorted by path: path, label (``unknown = (flags [N], label)``
    replaces the class of a flagged image), its most probable class and confidence, the top_k
    alternatives and the outlier score (``scores`` ``[N]``; NaN: not known)."""
    flags, unknown_label = unknown
    records = []
    rows = zip(paths, probabilities, scores, flags, strict=True)
    for path, row, score, flagged in sorted(rows, key=lambda item: item[0]):
        best = _top_k(row, classes, top_k)
        records.append(
            {
                "path": path,
                "label": unknown_label if flagged else best[0][0],
                "class": best[0][0],
                "confidence": best[0][1],
                "top_k": [{"label": label, "confidence": p} for label, p in best],
                "outlier_score": None if np.isnan(score) else float(score),
                "unknown": bool(flagged),
            }
        )
    return records


def predictions_csv(records: Sequence[dict[str, Any]], top_k: int, n_classes: int) -> str:
    """CSV text: ``path,label,class,confidence,label_2,confidence_2,...,outlier_score`` (k =
    min(top_k, K); ``label``: the class or the unknown label, ``class``: the most probable
    class, ``confidence``: its probability; an empty outlier_score: not known)."""
    k = min(top_k, n_classes)
    header = ["path", "label", "class", "confidence"]
    for rank in range(2, k + 1):
        header += [f"label_{rank}", f"confidence_{rank}"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*header, "outlier_score"])
    for record in records:
        row = [record["path"], str(record["label"]), str(record["class"])]
        row.append(f"{record['confidence']:.6f}")
        for item in record["top_k"][1:k]:
            row += [str(item["label"]), f"{item['confidence']:.6f}"]
        score = record["outlier_score"]
        writer.writerow([*row, "" if score is None else f"{score:.6f}"])
    return buffer.getvalue()


def _outliers(model: Any, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Outlier scores ``[N]`` of readable images (NaN for a model without them) and which of
    them the model labels unknown."""
    scores = None if model.class_means_ is None else model.outlier_score(list(paths))
    return _flags(model, scores, len(paths))


def _flags(model: Any, scores: np.ndarray | None, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` outlier scores (NaN for ``None``: a model without them) and which of them the
    model labels unknown."""
    if scores is None:
        return np.full(count, np.nan), np.zeros(count, dtype=bool)
    return scores, model.unknown_mask(scores)


def _names_json(path: Path | None) -> bool:
    """Whether an ``--output`` path ends in ``.json`` (any case)."""
    return path is not None and path.suffix.lower() == ".json"


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    return "json" if _names_json(args.output) else "csv"


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


def _check_output(output: Path | None, *scans: Any, model: Path | None = None) -> None:
    """Refuse an ``--output`` that is a file the command reads: an image of the scanned
    folders (``LabelledFiles`` / ``ImageFiles``) or the ``--model`` file. Writing there would
    replace the user's file (a typo away). Files the scans skip are not read: an earlier run's
    output inside a scanned folder may be written again.

    Raises:
        ConfigurationError: ``output`` exists and is one of those files.
    """
    if output is None or not output.is_file():
        return
    target = output.stat()
    read = [path for scan in scans for path in scan.paths]
    for path in [*read, *([model] if model is not None else [])]:
        try:
            found = Path(path).stat()
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
            raise ConfigurationError(
                f"--output {str(output)!r} is {str(path)!r}, a file this command reads; "
                "writing there would replace it: name another output file"
            )


def _say(args: argparse.Namespace, lines: Sequence[str]) -> None:
    """Print the summary ``lines`` to stderr (never stdout: that is for data), unless
    ``--quiet``."""
    if args.quiet:
        return
    for line in lines:
        print(line, file=sys.stderr)


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


def _fit_summary(model: Any, queries: int | None = None) -> dict[str, Any]:
    """The fitted model in the JSON summary; ``queries``: the query (unlabelled) images the fit
    saw (``None``: not known, e.g. a loaded model)."""
    method = model.method_
    return {
        "classes": [c for c in model.classes_],
        "method": type(method).__name__,
        "scope": getattr(method, "scope", None),
        "scope_reason": model.fit_info_.get("scope_reason"),
        "fallback": None if queries is None else _fallback(model, queries),
        "tsallis_head": None if queries is None else bool(model.fit_info_.get("tsallis_head")),
        "backbone": model.fit_info_.get("backbone") or getattr(model.network_, "arch", None),
        "image_size": model.preprocessing_.image_size,
    }


# --- runners ------------------------------------------------------------------------------
def _run_classify(args: argparse.Namespace) -> int:
    from anyshot.data.intake import report_shared_files, scan_images, scan_support

    start = time.perf_counter()
    support = scan_support(args.support, strict=args.strict)
    query = scan_images([args.query], strict=args.strict)
    _check_output(args.output, support, query)
    report_shared_files(support, query)
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
    scores, flags = _outliers(model, kept_paths)
    records = prediction_records(
        kept_paths, probabilities, model.classes_, args.top_k, scores, (flags, model.unknown_label)
    )
    unknown, unknown_lines = unknown_summary(model, flags)
    seconds = time.perf_counter() - start
    summary = {
        **_fit_summary(model, len(kept_paths)),
        "support": support.report.to_dict(),
        "query": query.report.to_dict(),
        "unknown": unknown,
        "seconds": seconds,
    }
    _predictions_output(args, records, model.classes_, summary)
    lines = [
        *support.report.summary_lines("support"),
        *query.report.summary_lines("query"),
        f"classified {len(records)} images into {len(model.classes_)} classes "
        f"({_method_words(model, len(records))})",
        *_choice_lines(model),
        *unknown_lines,
    ]
    if args.output is not None:
        lines.append(f"predictions written to {args.output}")
    lines.append(f"time: {seconds:.1f} s")
    _say(args, lines)
    return 0


def _run_fit(args: argparse.Namespace) -> int:
    from anyshot.data.intake import report_shared_files, scan_images, scan_support

    start = time.perf_counter()
    support = scan_support(args.support, strict=args.strict)
    unlabeled = scan_images([args.unlabeled], strict=args.strict) if args.unlabeled else None
    _check_output(args.output, support, *([unlabeled] if unlabeled is not None else []))
    if unlabeled is not None:
        report_shared_files(support, unlabeled)
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
        f"fitted {len(model.classes_)} classes "
        f"({_method_words(model, model.fit_info_.get('unlabeled_images', 0))})",
        *_choice_lines(model),
        _threshold_words(model),
        f"model written to {args.output}",
        f"time: {time.perf_counter() - start:.1f} s",
    ]
    _say(args, lines)
    return 0


def _choice_lines(model: Any) -> list[str]:
    """Why ``--scope auto`` trained what it did (none for a scope given by the user)."""
    reason = model.fit_info_.get("scope_reason")
    return [] if reason is None else [f"scope auto chose {reason}"]


def _threshold_words(model: Any) -> str:
    """What the model will call unknown, in words."""
    if model.unknown == "off":
        return "unknown images: off (every image gets one of the classes)"
    return f"unknown images: {threshold_words(model)}"


def _load(args: argparse.Namespace) -> Any:
    from anyshot.classifier import FewShotClassifier

    settings = embedding_settings(args)
    model = FewShotClassifier.load(args.model, device=args.device)
    return model.set_params(
        batch_size=args.batch_size,
        show_progress=not args.quiet,
        **settings,
        **unknown_settings(args),
    )


def _run_predict(args: argparse.Namespace) -> int:
    from anyshot.data.intake import scan_images

    start = time.perf_counter()
    model = _load(args)
    images = scan_images(args.images, strict=args.strict)
    _check_output(args.output, images, model=args.model)
    reporter = _Reporter({p: (images.report, "") for p in images.paths})
    probabilities, scores = model.predict_proba_and_outlier_score(
        images.paths, on_unreadable=None if args.strict else reporter
    )
    kept_paths = reporter.kept(images.paths)
    scores, flags = _flags(model, scores, len(kept_paths))
    records = prediction_records(
        kept_paths, probabilities, model.classes_, args.top_k, scores, (flags, model.unknown_label)
    )
    unknown, unknown_lines = unknown_summary(model, flags)
    seconds = time.perf_counter() - start
    summary = {
        **_fit_summary(model),
        "images": images.report.to_dict(),
        "unknown": unknown,
        "seconds": seconds,
    }
    _predictions_output(args, records, model.classes_, summary)
    lines = [
        *images.report.summary_lines("images"),
        f"classified {len(records)} images into {len(model.classes_)} classes "
        f"({', '.join(str(c) for c in model.classes_[:20])}"
        f"{', ...' if len(model.classes_) > 20 else ''})",
        *unknown_lines,
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
    if _names_json(args.output):
        raise ConfigurationError(
            f"suggest writes CSV; name the --output file .csv, not {args.output}"
        )
    model = _load(args)
    images = scan_images([args.unlabeled], strict=args.strict)
    _check_output(args.output, images, model=args.model)
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


def _gate_answer(model: Any) -> str:
    """What the gate answers with: the head fine-tuned on the labelled images alone (scope
    head), or support-init's class means (scopes last / all)."""
    if getattr(model.method_, "scope", None) == "head":
        return "fine-tuned on the labelled images alone"
    return "answered as support-init does, class means"


def _fallback(model: Any, queries: int) -> str | None:
    """Why a transductive method did not use its query images (its gate: too few query /
    unlabelled images for the classes they appear to hold; its guard: a trained classifier
    that disagreed with the class means), or ``None`` when its trained answer stands."""
    reason = model.fit_info_.get("fallback")
    if reason == "gate":
        return (
            f"{queries} query/unlabelled images for {len(model.classes_)} classes, too few for "
            "the classes they appear to hold (images that look like none of the classes do "
            f"not count): {_gate_answer(model)}"
        )
    if reason == "guard":
        return (
            f"{queries} query/unlabelled images, but the trained classifier disagreed with the "
            "class means on most of them: answered as support-init does, class means"
        )
    return None


def _method_words(model: Any, queries: int) -> str:
    """The method that produced the answer, in words: its class and scope, and what a
    safeguard of the transductive method answered with instead, with advice (``queries``: the
    query or unlabelled images it saw)."""
    method = model.method_
    name = type(method).__name__
    scope = getattr(method, "scope", None)
    words = f"{name}, scope {scope}" if scope else name
    fallback = _fallback(model, queries)
    if queries > 0 and getattr(method, "transductive", True) is False:
        return (
            f"{words}: trained on the labelled images alone; the {queries} query/unlabelled "
            f"image{'s were' if queries != 1 else ' was'} not used in the fit"
        )
    if fallback is None and model.fit_info_.get("tsallis_head"):
        return (
            f"{words}, its Tsallis head: the {queries} query/unlabelled images appear to hold "
            f"a few of the {len(model.classes_)} classes"
        )
    if fallback is None:
        return words
    if model.fit_info_.get("fallback") == "gate":
        advice = "give more query / unlabelled images to use them in the fit"
        return f"{words}: {fallback}; {advice}"
    advice = (
        "the query images may hold classes the labelled ones do not, or the classes may "
        "be hard to tell apart; --method finetune fine-tunes on the labelled images alone"
    )
    return f"support-init's class means, untrained: {words} had {fallback}; {advice}"


def _guarded(runner: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Ctrl-C: exit 130 with a one-line message (outputs are atomic: nothing half-written)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return runner(args)
        except KeyboardInterrupt:
            print("anyshot: interrupted; no output file was written", file=sys.stderr)
            return 130

    return run
