""" "None of these" in the practitioner's commands: the ``--unknown`` options and their summary.

``classify``, ``fit`` and ``predict`` take ``--unknown auto|off``, ``--unknown-label`` and
``--false-alarm-rate``; ``fit`` stores them in the model file, ``predict`` uses the model's
unless given. Each image's outlier score (:meth:`anyshot.classifier.FewShotClassifier.
outlier_score`) is always written; with ``auto`` an image above the threshold is labelled
unknown.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from anyshot.cli.options import rate

__all__ = [
    "UNKNOWN_EPILOG",
    "add_unknown_options",
    "threshold_words",
    "unknown_settings",
    "unknown_summary",
]

UNKNOWN_EPILOG = """\
Images of none of the classes: each image gets an outlier_score, its cosine distance to the
nearest class mean of the labelled images (0 = on a class mean; higher = more likely none of
the classes). When the query / unlabelled images spread over at least 3/4 of the classes, the
score is the mean of that distance and the distance with every embedding centred on the mean of
all the images the fit saw (centring separates other things better; the uncentred distance
keeps blank frames far); a folder of a few of the classes is not centred (its own images would
look far from their class). With --unknown auto (the default) an image above a threshold is labelled
`unknown` (--unknown-label). The threshold is set from the labelled images alone, for
--false-alarm-rate (default 0.05: about 5% of images of the classes flagged): each labelled
image is left out of its class mean and scored as a new image would be. With one image per
class nothing can be left out; the threshold is then a low quantile of the distances between
images of different classes, and the rate is only approximate. --unknown off labels
every image with one of the classes, as before.
"""


def add_unknown_options(parser: argparse.ArgumentParser, *, saved: bool) -> None:
    """``--unknown``, ``--unknown-label``, ``--false-alarm-rate``; ``saved``: the defaults are
    the model file's (``predict``), else auto / unknown / 0.05."""
    group = parser.add_argument_group("images of none of the classes (see below)")
    default = "the model's (set by anyshot fit; auto" if saved else "auto"
    group.add_argument(
        "--unknown",
        choices=["auto", "off"],
        default=None if saved else "auto",
        help=f"auto: label images far from every class `unknown`; off: never (default "
        f"{default}{' unless fit said otherwise)' if saved else ''})",
    )
    group.add_argument(
        "--unknown-label",
        type=label_name,
        default=None if saved else "unknown",
        metavar="NAME",
        help="the label of such images (default "
        + ("the model's: unknown unless fit said otherwise)" if saved else "unknown)"),
    )
    group.add_argument(
        "--false-alarm-rate",
        type=rate,
        default=None if saved else 0.05,
        metavar="RATE",
        help="target share of images of the classes labelled unknown (default "
        + ("the model's: 0.05 unless fit said otherwise)" if saved else "0.05)"),
    )


def label_name(text: str) -> str:
    """``--unknown-label``: a name with a visible character (an empty label would read as a
    missing value in the CSV)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"--unknown-label needs a name with a visible character, got {text!r}"
        )
    return text


def unknown_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options given (none for a command without them), as
    :class:`~anyshot.classifier.FewShotClassifier` parameters."""
    names = ("unknown", "unknown_label", "false_alarm_rate")
    given = {name: getattr(args, name, None) for name in names}
    return {name: value for name, value in given.items() if value is not None}


def threshold_words(model: Any) -> str:
    """The fitted threshold and how it was set, in words (``model`` has a threshold)."""
    reference = model.unknown_reference_
    how = (
        f"a {100 * model.false_alarm_rate:g}% false-alarm rate, measured by leaving each "
        "labelled image out"
        if reference.conformal
        else "one image per class: the distances between classes, an approximate rate"
    )
    lowest = reference.lowest_rate()
    if lowest is not None and model.false_alarm_rate < lowest:
        how += (
            f" (but so few labelled images set no rate below about {100 * lowest:.1f}%: label "
            f"more images, in every class, for {100 * model.false_alarm_rate:g}%)"
        )
    elif not reference.conformal and len(reference.distances) < 2:
        how += (
            " (two classes of one image each: their one distance sets it whatever the rate; "
            "label a second image of a class to set a rate)"
        )
    where = ""
    if getattr(model, "outlier_centre_", None) is not None:
        both = getattr(model, "raw_class_means_", None) is not None  # None: a format-2 file
        where = (
            "; averaged with the distance of embeddings centred on the images' mean"
            if both
            else "; embeddings centred on the images' mean"
        )
    return f"outlier score above {model.unknown_threshold_:.3f}: {how}{where}"


def unknown_summary(model: Any, flagged: np.ndarray) -> tuple[dict[str, Any], list[str]]:
    """The JSON summary entry and the summary lines for ``flagged`` ``[N]`` (bool) images."""
    threshold = model.unknown_threshold_
    reference = model.unknown_reference_
    rule = None
    if reference is not None:
        rule = "leave-one-out" if reference.conformal else "one image per class (approximate)"
    entry = {
        "mode": model.unknown,
        "label": model.unknown_label,
        "false_alarm_rate": float(model.false_alarm_rate),
        "threshold": threshold,
        "rule": rule,
        "flagged": int(np.count_nonzero(flagged)),
        "centred": getattr(model, "outlier_centre_", None) is not None,
        "lowest_rate": None if reference is None else reference.lowest_rate(),
    }
    if model.unknown == "off":
        return entry, []
    if threshold is None:
        return entry, ["no unknown detection: the model file predates it (fit it again)"]
    count = f"{entry['flagged']} of {len(flagged)} images labelled {model.unknown_label!r}"
    return entry, [f"{count} ({threshold_words(model)})"]
