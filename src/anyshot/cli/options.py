"""The command line's shared vocabulary: argument types, option groups, arguments -> method.

* argument types: :func:`positive_int`, :func:`positive_float`, :func:`non_negative_float`,
  :func:`non_negative_int`, :func:`fraction`, :func:`shots_list`, :func:`ways_list`;
* option groups: :func:`add_method_options` (evaluate, classify, fit), :func:`add_backbone_options`,
  :func:`add_run_options`, :func:`add_dataset_argument`;
* :func:`method_from_args`: THE function turning parsed arguments into a method, for every
  command that builds one; :func:`preprocessing_overrides`: the one place ``--image-size`` is
  read.

At ``--scope head`` (the default) the settings not given come from
:data:`~anyshot.methods.presets.RECOMMENDED` (``transductive``) or
:data:`~anyshot.methods.presets.RECOMMENDED_INDUCTIVE` (``finetune``), tuned on validation
classes; at ``--scope last`` / ``all`` from the paper's (:data:`~anyshot.methods.presets.PAPER`,
:data:`~anyshot.methods.presets.PAPER_INDUCTIVE`); ``support-init`` is
:data:`~anyshot.methods.presets.SUPPORT_INIT`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anyshot.backbones.preprocessing import INPUT_SPECS
from anyshot.data.registry import available_datasets
from anyshot.errors import ConfigurationError
from anyshot.methods.cosine import CENTERS
from anyshot.methods.finetune import (
    HEAD_ONLY_FIELDS,
    QUERY_FIELDS,
    SCOPES,
    FineTuning,
    field_default,
)
from anyshot.methods.presets import (
    NETWORK,
    PAPER,
    PAPER_INDUCTIVE,
    RECOMMENDED,
    RECOMMENDED_INDUCTIVE,
    SUPPORT_INIT,
    UNGUARDED,
    Method,
)
from anyshot.methods.registry import METHODS
from anyshot.methods.scope_rule import (
    FEW_SHOT_BUDGET,
    FEW_SHOTS,
    MANY_SHOT_BUDGET,
    ScopeRule,
)
from anyshot.methods.support_init import SupportBasedInit
from anyshot.outliers import COVERING_SHARE

__all__ = [
    "DATASET_CHOICES",
    "IMAGE_SIZE_HELP",
    "add_backbone_options",
    "add_dataset_argument",
    "add_embedding_options",
    "add_method_options",
    "add_run_options",
    "by_scope",
    "default_method_words",
    "embedding_settings",
    "fraction",
    "method_from_args",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "preprocessing_overrides",
    "rate",
    "shots_list",
    "ways_list",
]

#: The dataset formats anyshot reads.
DATASET_CHOICES = available_datasets()

#: Method options that only fine-tuning uses (support-init does no training).
TRAINING_FIELDS = (
    "scope",
    "epochs",
    "lr",
    "network_lr",
    "balanced_support",
    "augment",
    "flip",
    *HEAD_ONLY_FIELDS,
    *QUERY_FIELDS,
)


# --- argument types ---------------------------------------------------------------------------
def _number(text: str, cast: Callable[[str], Any], valid: Callable[[Any], bool], what: str) -> Any:
    """``cast(text)`` if it parses and is ``valid``, else an argparse error "must be {what}"."""
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def device(text: str) -> str:
    """A torch device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...)."""
    import torch

    try:
        chosen = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device name; use cpu, cuda, cuda:N or mps"
        ) from None
    if chosen.type == "cpu":
        return text
    backend = torch.backends.mps if chosen.type == "mps" else getattr(torch, chosen.type, None)
    available = getattr(backend, "is_available", None)
    if not callable(available) or not available():
        build = torch.__version__
        raise argparse.ArgumentTypeError(
            f"{text!r} is not available: this torch ({build}) finds no {chosen.type} device "
            "(a CPU-only torch, or no driver); use --device cpu, or see the README's install notes"
        )
    count = getattr(backend, "device_count", None)
    if chosen.index is not None and callable(count) and chosen.index >= count():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not available: {count()} {chosen.type} device(s), numbered from 0"
        )
    return text


def output_file(text: str) -> Path:
    """A file the command can write when its work is done: not a folder, below a folder that
    exists (or can be made) and is writable. Checked when the arguments are read, so a wrong
    path does not lose a long run at its end."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text!r} is a folder; give the path of a file to write (e.g. {path / 'name'})"
        )
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest folder that exists: the rest is created
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {str(folder)!r} is a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {str(folder)!r} is read-only")
    return path


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return int(_number(text, int, lambda v: v >= 1, "a positive integer"))


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return float(_number(text, float, lambda v: v > 0 and math.isfinite(v), "a positive number"))


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return int(_number(text, int, lambda v: v >= 0, "an integer >= 0"))


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return float(_number(text, float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0"))


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    return float(_number(text, float, lambda v: 0 <= v <= 1, "a number in [0, 1]"))


def _rate_or_zero(text: str) -> float:
    """A number in [0, 1)."""
    return float(_number(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)"))


def rate(text: str) -> float:
    """A number strictly between 0 and 1."""
    return float(_number(text, float, lambda v: 0 < v < 1, "a number between 0 and 1"))


def shots_list(text: str) -> list[int]:
    """``"1"`` or ``"1,5,10"`` -> shot counts (each >= 1)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shots takes an integer or a comma-separated list of integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"every shot count must be >= 1, got {text!r}")
    return values


def ways_list(text: str) -> list[int | None]:
    """``"5"``, ``"5,10,20"`` or ``"all"`` -> way counts (``None`` = every class)."""
    values: list[int | None] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() == "all":
            values.append(None)
            continue
        try:
            number = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--ways takes integers or 'all', comma-separated, got {text!r}"
            ) from None
        if number < 2:
            raise argparse.ArgumentTypeError(
                f"every way count must be >= 2 (one class leaves nothing to classify), got {text!r}"
            )
        values.append(number)
    if not values:
        raise argparse.ArgumentTypeError(f"--ways needs at least one value, got {text!r}")
    return values


# --- option groups ----------------------------------------------------------------------------
def add_dataset_argument(group: argparse._ArgumentGroup) -> None:
    """``--dataset`` (required): one of :data:`DATASET_CHOICES`."""
    group.add_argument(
        "--dataset",
        choices=DATASET_CHOICES,
        required=True,
        help="dataset format: " + ", ".join(DATASET_CHOICES),
    )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def by_scope(name: str, words: Callable[[Any], str] = str) -> str:
    """The default of method setting ``name`` in words: the recommended head's
    (:data:`~anyshot.methods.presets.RECOMMENDED`) at ``--scope head`` and the paper's
    (:data:`~anyshot.methods.presets.PAPER`) at ``last`` / ``all``, or one value when they agree.
    """
    head, paper = getattr(RECOMMENDED, name), getattr(PAPER, name)
    if head == paper:
        return f"{words(head)} at every scope"
    return f"{words(head)} for --scope head, {words(paper)} for last/all"


def default_method_words() -> str:
    """What the default method (``--method transductive`` at ``--scope head``,
    :data:`~anyshot.methods.presets.RECOMMENDED`) does, in a sentence built from its settings."""
    head = RECOMMENDED
    balance = (
        f"TIM's class-balance term (weight {head.balance_weight:g}) only when a first run's "
        "predicted classes look balanced"
        if head.adaptive_balance
        else f"TIM's class-balance term (weight {head.balance_weight:g})"
    )
    weighing = " (each class weighing the same, however many images it has)"
    weighing = weighing if head.balanced_support else ""
    return (
        "a cosine classifier on the frozen backbone's embeddings, initialised from the labelled "
        f"images' class means and trained for {head.epochs} epochs (Adam {head.lr:g}, T = "
        f"{head.temperature:g}) on their cross-entropy"
        f"{weighing}"
        " plus, on the query (or unlabelled) "
        "images, their log-likelihood under a mixture of the classes (weight "
        f"{head.likelihood_weight:g}) with class proportions fitted by empirical Bayes and "
        f"{balance}; embeddings centred on the mean of the class means (on all images' mean in "
        "that balanced run). A second head, trained with alpha-TIM's query terms (Tsallis "
        "entropies), answers where the first finds the query images hold fewer than "
        f"{head.tsallis_share:.0%} of the classes and it finds more than "
        f"{head.tsallis_margin:g} fewer still (also against the answer below, where the two "
        f"agree on at least {head.min_agreement:.0%} of the images and support-init spreads "
        f"them over fewer than {COVERING_SHARE:.0%} of the classes), and from 2 labelled images "
        f"per class wherever the first finds them to hold {head.tsallis_band[0]:.0%} up to "
        f"{head.tsallis_band[1]:.0%} of the classes. It fine-tunes on the "
        "labelled images alone (no "
        "query term, no centring) when there are fewer than "
        f"{head.min_queries_per_class:g} query images per class (plus "
        f"{head.queries_per_shot:g} per labelled image per class) for the classes "
        "they appear to hold (those the trained head predicts for them; counting the images "
        f"--unknown would not flag at a {head.gate_outlier_rate:.0%} false-alarm rate; where "
        "the head fine-tuned on the labelled images alone predicts them to hold fewer than "
        f"{head.gate_prior_share:.0%} of the classes, with the class proportions its "
        "predictions imply), and answers as "
        "support-init does (class means, no training) when the trained classifier agrees with "
        f"support-init on fewer than {head.min_agreement:.0%} of them while support-init "
        f"spreads them over at least {COVERING_SHARE:.0%} of the classes"
    )


def add_method_options(parser: argparse.ArgumentParser, *, auto: bool = False) -> None:
    """The method and its settings (read by :func:`method_from_args`); the defaults shown are
    those of the presets (:func:`by_scope`). ``auto``: ``--scope auto`` (the default) and
    ``--time-budget`` (the practitioner commands)."""
    group = parser.add_argument_group(
        "method",
        "settings not given are, at --scope head, the recommended head's (tuned on\n"
        "validation classes) and, at --scope last/all, the paper's",
    )
    default = default_method_words().replace("%", "%%")  # argparse %-formats help
    group.add_argument(
        "--method",
        choices=list(METHODS),
        default="transductive",
        help="transductive (default): fine-tune on the labelled images' cross-entropy plus "
        "terms on the query (or unlabelled) images; at --scope head by default: "
        f"{default}. finetune: the labelled images only. support-init: cosine "
        f"class means, no training, T = {SUPPORT_INIT.temperature:g} (T only scales the "
        "confidences, never the predictions)",
    )
    scopes = "head = the classifier on frozen embeddings (fast, any number of images); " + (
        "last = the last backbone stage too; all = every parameter (the paper's scope and "
        f"settings: Adam {PAPER.lr:g}, T {PAPER.temperature:g}; batch-norm on the stored "
        "statistics; slow on a CPU)"
    )
    if auto:
        group.add_argument(
            "--scope",
            choices=["auto", *SCOPES],
            default="auto",
            help=f"what fine-tuning trains: auto (default) = {AUTO_SCOPE_WORDS}; {scopes}. "
            "auto's settings for every parameter trained far better than the paper's on images "
            "unlike ImageNet's (validation classes, 20-way 5-shot Omniglot: 96.5%% against 74.5%%)",
        )
        group.add_argument(
            "--time-budget",
            type=positive_float,
            help="seconds the fit may take when it trains the network (--scope auto: it "
            "trains fewer epochs, or the head, to fit; last / all: training stops at it) "
            f"(default with --scope auto: {FEW_SHOT_BUDGET:g} s up to {FEW_SHOTS:g} labelled "
            f"images per class, {MANY_SHOT_BUDGET:g} s above; none otherwise)",
        )
    else:
        group.add_argument(
            "--scope",
            choices=list(SCOPES),
            help=f"what fine-tuning trains: {scopes} (default: head)",
        )
    group.add_argument(
        "--epochs",
        type=positive_int,
        help=f"fine-tuning epochs (default: {by_scope('epochs')})",
    )
    group.add_argument(
        "--lr", type=positive_float, help=f"Adam learning rate (default: {by_scope('lr')})"
    )
    group.add_argument(
        "--network-lr",
        type=positive_float,
        help="scopes last / all: Adam learning rate of the network's weights, the head keeping "
        "--lr (default: --lr)",
    )
    group.add_argument(
        "--temperature",
        type=positive_float,
        help="cosine-logit temperature T; lower = more confident (default: "
        f"{by_scope('temperature')}; {SUPPORT_INIT.temperature} for support-init, where T only "
        "scales the confidences, never the predictions)",
    )
    _add_support_options(group)
    _add_query_options(group)
    group.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="augment images while fine-tuning (default: on for --scope all only)",
    )
    group.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --augment: mirror images left to right at random (default: on); --no-flip "
        "for characters, digits, text or anything whose mirror image is another class",
    )
    group.add_argument(
        "--no-relu", dest="relu", action="store_false", help="do not rectify embeddings"
    )


def _add_support_options(group: argparse._ArgumentGroup) -> None:
    """How the labelled images train the head when their classes hold unequal numbers."""
    group.add_argument(
        "--balanced-support",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="every class weighs the same in the labelled images' loss, however many images it "
        "has (a class of 1 image among classes of 20 is not learnt as 20 times rarer); no "
        "change when every class has as many images (default: "
        f"{by_scope('balanced_support', _yes)})",
    )
    group.add_argument(
        "--shared-spread",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="scope head: where the classes have unequal numbers of labelled images, fill the "
        "classes of fewer images up to the largest class's count with the within-class spread "
        "the classes share (each class's mean plus the labelled images' offsets from their "
        "own class's mean) before fine-tuning a head on uncentred embeddings (--method "
        "finetune, the gate's answer, the Tsallis head; --no-center makes the transductive head "
        "one); no change when every class has as many (default: "
        f"{by_scope('shared_spread', _yes)})",
    )


def _add_query_options(group: argparse._ArgumentGroup) -> None:
    """The query terms' settings (--method transductive only: ``QUERY_FIELDS``)."""
    group.add_argument(
        "--entropy-weight",
        type=non_negative_float,
        help="transductive: lambda, weight of the query prediction entropy (default: "
        f"{by_scope('entropy_weight')})",
    )
    group.add_argument(
        "--balance-weight",
        type=non_negative_float,
        help="transductive: weight of TIM's class-balance term, the entropy of the mean query "
        f"prediction (default: {by_scope('balance_weight')}; see --adaptive-balance); it "
        "assumes balanced classes, 0 turns it off",
    )
    group.add_argument(
        "--adaptive-balance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="transductive: use the balance term only when a first run's predicted classes "
        "look equally frequent (an empirical-Bayes Dirichlet test; default: "
        f"{by_scope('adaptive_balance', _yes)}); --no-adaptive-balance always uses it (best "
        "when you know the classes are balanced)",
    )
    group.add_argument(
        "--unequal-balance-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="transductive, with --adaptive-balance and centring on the support's class means: "
        "where the classes have unequal numbers of labelled images, the balance term also runs "
        "when a head run centred on all the images passes the balance test (the first run "
        "leans towards the classes of more images); no change when every class has as many "
        "(default: "
        f"{by_scope('unequal_balance_test', _yes)})",
    )
    group.add_argument(
        "--likelihood-weight",
        type=non_negative_float,
        help="transductive: weight of the queries' log-likelihood under a mixture of the "
        f"classes with re-estimated proportions (default: {by_scope('likelihood_weight')})",
    )
    group.add_argument(
        "--prior-count",
        type=non_negative_float,
        help="transductive: pseudo-count per class of those proportions, unless "
        f"--empirical-bayes; large = uniform (default: {by_scope('prior_count')})",
    )
    group.add_argument(
        "--center",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="transductive: centre embeddings on a mean unit embedding of the episode, see "
        f"--center-on (default: {by_scope('center', _yes)})",
    )
    _add_safeguard_options(group)


def _add_safeguard_options(group: argparse._ArgumentGroup) -> None:
    """The centre's and proportions' variants and the fallbacks to support-init (the default
    preset's settings; ``QUERY_FIELDS`` too)."""
    unguarded = UNGUARDED
    group.add_argument(
        "--center-on",
        choices=list(CENTERS),
        help="transductive, with --center: episode = the mean of the support and query "
        "embeddings; support = the mean of the support's class means, whatever classes the "
        "queries hold; adaptive = support, and episode for the balanced second run of "
        f"--adaptive-balance (default: {by_scope('center_on')}; without the safeguards: "
        f"{unguarded.center_on})",
    )
    group.add_argument(
        "--empirical-bayes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="transductive: estimate the class proportions' pseudo-count per episode from the "
        "queries' soft class counts (a Dirichlet prior fitted by empirical Bayes) instead of "
        f"--prior-count (default: {by_scope('empirical_bayes', _yes)}; without the "
        f"safeguards: {_yes(unguarded.empirical_bayes)})",
    )
    group.add_argument(
        "--min-queries-per-class",
        type=non_negative_float,
        help="transductive: with fewer query images than this (plus --queries-per-shot per "
        "labelled image per class) per class they appear to hold (the classes the fine-tuned "
        "head predicts for them), or a single one, leave them out: fine-tune on the "
        "labelled images alone (scopes last / all: answer as support-init does); 0 = off (default: "
        f"{by_scope('min_queries_per_class')})",
    )
    group.add_argument(
        "--queries-per-shot",
        type=non_negative_float,
        help="transductive: the extra query images the gate of --min-queries-per-class needs "
        "per class for each labelled image per class (more labelled images, more queries "
        f"needed to improve on them); 0 = off (default: {by_scope('queries_per_shot')})",
    )
    group.add_argument(
        "--min-agreement",
        type=fraction,
        help="transductive: if the trained classifier agrees with support-init on fewer than "
        "this fraction of the query images, and support-init spreads them over at least "
        f"{100 * COVERING_SHARE:.0f}%% of the classes, answer as support-init does; 0 = off "
        "(default: "
        f"{by_scope('min_agreement')})",
    )
    group.add_argument(
        "--gate-outlier-rate",
        type=_rate_or_zero,
        help="transductive: the safeguard that answers without the query images when there "
        "are too few of them per class (--min-queries-per-class) counts only those --unknown "
        "would not flag at this false-alarm rate (its own, not --false-alarm-rate's); 0 = every "
        "image counts "
        f"(default: {by_scope('gate_outlier_rate')})",
    )
    group.add_argument(
        "--gate-prior-share",
        type=fraction,
        help="transductive, scope head: when the gate of --min-queries-per-class fine-tunes on "
        "the labelled images alone and that head predicts the query images to hold fewer than "
        "this share of the classes, add the class proportions its predictions imply (query "
        "folders of a few of many classes: the absent classes lose weight); 0 = off "
        f"(default: {by_scope('gate_prior_share')})",
    )
    group.add_argument(
        "--outlier-rate",
        type=_rate_or_zero,
        help="transductive, scope head: leave out of the query terms the query images that "
        "--unknown would flag at this false-alarm rate (far from every class mean of the "
        "labelled images); 0 = off (default: "
        f"{by_scope('outlier_rate')})",
    )
    group.add_argument(
        "--outlier-alarm",
        type=_rate_or_zero,
        help="with --outlier-rate: leave those images out only when more of the query images "
        "are flagged than the rate explains (one-sided binomial test at this level), so that "
        "folders without such images keep every image; 0 = always (default: "
        f"{by_scope('outlier_alarm')})",
    )
    _add_tsallis_options(group)


def _add_tsallis_options(group: argparse._ArgumentGroup) -> None:
    """The second head with alpha-TIM's query terms and when it answers (``QUERY_FIELDS``)."""
    group.add_argument(
        "--tsallis-head",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="transductive: also fine-tune a second head with alpha-TIM's query terms (Tsallis "
        "entropies) and answer with it where the first head finds the query images hold "
        "fewer than --tsallis-share of the classes and it finds more than --tsallis-margin "
        "fewer still: query folders holding a few of many classes (scopes last / all: only "
        "the safeguards' count of those classes) "
        f"(default: {by_scope('tsallis_head', _yes)})",
    )
    group.add_argument(
        "--tsallis-margin",
        type=non_negative_float,
        help="with --tsallis-head: how many fewer classes (the effective number predicted) "
        f"its answer must give the query images (default: {by_scope('tsallis_margin')})",
    )
    group.add_argument(
        "--tsallis-share",
        type=fraction,
        help="with --tsallis-head: the share of the classes below which the first head's "
        "count of the classes the query images hold must lie (default: "
        f"{by_scope('tsallis_share')})",
    )
    group.add_argument(
        "--tsallis-band",
        type=fraction,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="with --tsallis-head, scope head: from 2 labelled images per class, answer with the "
        "second head whatever its count where the first finds the query images hold a share of "
        "the classes from LOW up to (not including) HIGH (imbalanced query folders); 0 0 = "
        f"never (default: {by_scope('tsallis_band', lambda band: f'{band[0]:g} {band[1]:g}')})",
    )
    group.add_argument(
        "--tsallis-gated",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --tsallis-head, scope head: where the safeguard of --min-queries-per-class "
        "fine-tunes on the labelled images alone, answer with the second head instead when it "
        "finds the query images hold more than --tsallis-margin fewer classes than that answer "
        "(which must find fewer than --tsallis-share of them), there are enough images per "
        "class it finds, the two answers agree on at least --min-agreement of the images, and "
        f"support-init spreads them over fewer than {100 * COVERING_SHARE:.0f}%% of the classes "
        "(default: "
        f"{by_scope('tsallis_gated', _yes)})",
    )


def add_backbone_options(
    parser: argparse.ArgumentParser, *, embedding: bool = False, image_size_help: str | None = None
) -> None:
    """``--backbone`` and ``--image-size`` (plus ``--embedding`` when asked); ``image_size_help``
    replaces the default help of ``--image-size``."""
    group = parser.add_argument_group("backbone")
    group.add_argument(
        "--backbone",
        default="efficientnet-lite0",
        help="architecture name (efficientnet-lite0: ImageNet weights, no download; conv4, "
        "resnet12, wrn28-10: random weights) or an anyshot backbone checkpoint file "
        "(default: efficientnet-lite0)",
    )
    group.add_argument(
        "--image-size",
        type=positive_int,
        help=image_size_help
        or f"input side in pixels (default: the backbone's: {_input_sizes()}; a checkpoint's "
        "own); smaller is faster and less accurate",
    )
    if embedding:
        group.add_argument(
            "--embedding",
            choices=["features", "logits"],
            help="use pooled features or the pre-training logits as the embedding",
        )


def _input_sizes() -> str:
    """``"224 for efficientnet-lite0, 84 for conv4, resnet12, wrn28-10"``, from
    :data:`~anyshot.backbones.preprocessing.INPUT_SPECS`."""
    by_size: dict[int, list[str]] = {}
    for arch, spec in INPUT_SPECS.items():
        by_size.setdefault(spec.image_size, []).append(arch)
    ordered = sorted(by_size.items(), key=lambda item: -item[0])
    return ", ".join(f"{size} for {', '.join(archs)}" for size, archs in ordered)


#: ``--image-size`` of the practitioner commands: why small images are still enlarged.
IMAGE_SIZE_HELP = (
    f"input side in pixels (default: the backbone's: {_input_sizes()}; a checkpoint's own), "
    "whatever the images' size: on validation classes, small images enlarged to 224 px were "
    "classified better than at their own size, by 16-20 points for 84 px mini-ImageNet photos "
    "and 5-8 points for 105 px Omniglot characters, 5-way 1-shot; "
    "benchmarks/image_size_probe.py); when --scope auto trains the network, the images' own "
    "size within 64-224 px (a training pass costs about 4 times more at 224 px than at 84)"
)


def preprocessing_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The preprocessing the arguments ask of the backbone (``image_size``), as keyword
    arguments; empty for the backbone's own. The one place the CLI reads ``--image-size``."""
    return {} if args.image_size is None else {"image_size": args.image_size}


def add_run_options(
    parser: argparse.ArgumentParser, *, strict: bool = False, quiet: str = "no progress bars"
) -> None:
    """``--device``, ``--batch-size``, ``--threads``, ``--quiet`` (and ``--strict``)."""
    group = parser.add_argument_group("run")
    group.add_argument("--device", type=device, help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    batch_size = field_default(FineTuning, "batch_size")
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"images decoded and embedded at once; bounds memory (default: {batch_size})",
    )
    group.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads for torch (default: the free cores, i.e. the cores this process "
        "may use less the 1-minute load average, at least 1: torch's one thread per core "
        "collapses on a machine busy with other work); image files are decoded on every "
        "core whatever this says (up to 4 threads a process: decoding threads share busy "
        "cores without stalling)",
    )
    if strict:
        group.add_argument(
            "--strict",
            action="store_true",
            help="stop at the first image that cannot be read (corrupt, truncated, too large, "
            "permission denied) instead of skipping it",
        )
    group.add_argument("--quiet", action="store_true", help=quiet)


def add_embedding_options(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir``, ``--no-cache`` and ``--precision`` (the practitioner commands)."""
    group = parser.add_argument_group("embedding")
    group.add_argument(
        "--cache-dir",
        type=Path,
        help="folder of the feature cache: embeddings of image files are kept there and read "
        "back while the network and the files are unchanged, so a second run on the same "
        "images (or predict after fit) embeds nothing (default: $XDG_CACHE_HOME/anyshot/"
        "features or ~/.cache/anyshot/features)",
    )
    group.add_argument(
        "--no-cache",
        action="store_true",
        help="write and read no feature cache on disk",
    )
    group.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="of the embedding forward pass: auto = bfloat16 on a CPU with native bfloat16 "
        "(~3-4x faster, same accuracy within noise), else float32 (default auto)",
    )


def embedding_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The estimator keywords ``cache_dir`` and ``precision`` the options ask for.

    Raises:
        ConfigurationError: ``--cache-dir`` together with ``--no-cache``.
    """
    if args.no_cache and args.cache_dir is not None:
        raise ConfigurationError("--cache-dir and --no-cache contradict each other; give one")
    cache_dir: Path | bool | None = False if args.no_cache else args.cache_dir
    return {"cache_dir": cache_dir, "precision": args.precision}


# --- arguments -> method ----------------------------------------------------------------------
def _flags(names: list[str]) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in names)


#: ``--scope auto`` in words (:class:`~anyshot.methods.scope_rule.ScopeRule`).
AUTO_SCOPE_WORDS = (
    "the head when the frozen backbone tells the labelled classes apart (images like "
    "ImageNet's), every parameter of the network (Adam 1e-2 head / 1e-3 network, T 0.1, 25 "
    "epochs, augmentation without flips; batch-norm statistics re-estimated on the images "
    "from 5 labelled images per class; at the images' own size within 64-224 px unless "
    "--image-size is given) when the classes look alike to it (images far from "
    "ImageNet: characters, digits, ...), and the head again when that would not fit "
    "--time-budget; options given apply to either (the query-term options and "
    "--shared-spread to the head only); "
    "the summary says what was chosen and why"
)


def method_from_args(args: argparse.Namespace) -> Method | ScopeRule:
    """The method the options of :func:`add_method_options` (and ``--seed``, ``--device``,
    ``--batch-size``) describe.

    ``support-init`` is :data:`~anyshot.methods.presets.SUPPORT_INIT`; fine-tuning starts from
    the recommended head at scope ``head`` and from the paper's method at ``last`` / ``all``
    (see the module doc); every option given replaces that one setting.

    Raises:
        ConfigurationError: training options with support-init, or query-term options with
            ``--method finetune``.
    """
    given = {k: getattr(args, k) for k in TRAINING_FIELDS if getattr(args, k, None) is not None}
    budget = getattr(args, "time_budget", None)
    if given.get("scope") == "auto":
        return _scope_rule(args, given, budget)
    if budget is not None:
        if given.get("scope", "head") == "head":
            raise ConfigurationError(
                "--time-budget applies to --scope auto, last or all (the head takes seconds)"
            )
        given["time_budget"] = budget
    temperature = getattr(args, "temperature", None)
    if temperature is not None:
        given["temperature"] = temperature
    common: dict[str, Any] = {
        "relu": getattr(args, "relu", True),
        "batch_size": args.batch_size,
        "device": args.device,
    }
    if args.method == "support-init":
        training = [k for k in given if k != "temperature"]
        if training:
            raise ConfigurationError(
                f"{_flags(training)} apply to fine-tuning (--method transductive or finetune); "
                "support-init does no training"
            )
        return dataclasses.replace(SUPPORT_INIT, **common, **given)
    transductive = args.method == "transductive"
    query = [k for k in given if k in QUERY_FIELDS]
    if query and not transductive:
        raise ConfigurationError(f"{_flags(query)} apply to --method transductive only")
    if given.get("scope", "head") == "head":
        base: Method = RECOMMENDED if transductive else RECOMMENDED_INDUCTIVE
    else:
        base = PAPER if transductive else PAPER_INDUCTIVE
    return dataclasses.replace(base, **common, seed=args.seed, **given)


def _scope_rule(
    args: argparse.Namespace, given: dict[str, Any], budget: float | None
) -> Method | ScopeRule:
    """``--scope auto``: the rule between the head the other options describe and
    :data:`~anyshot.methods.presets.NETWORK` with the options it takes (support-init, which
    trains nothing, as it is)."""
    head_args = argparse.Namespace(**{**vars(args), "scope": None, "time_budget": None})
    head = method_from_args(head_args)
    assert not isinstance(head, ScopeRule)  # scope head
    if isinstance(head, SupportBasedInit):
        if budget is not None:
            raise ConfigurationError(
                "--time-budget applies to fine-tuning; support-init trains nothing"
            )
        return head
    head_only = {"scope", *QUERY_FIELDS, *HEAD_ONLY_FIELDS}
    network_given = {k: v for k, v in given.items() if k not in head_only}
    temperature = getattr(args, "temperature", None)
    if temperature is not None:
        network_given["temperature"] = temperature
    network = dataclasses.replace(
        NETWORK,
        relu=getattr(args, "relu", True),
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        **network_given,
    )
    return ScopeRule(head=head, network=network, time_budget=budget)
