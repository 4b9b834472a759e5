"""Reports over results files: tables with spread, warnings, hardness lines and plots.

Input: results JSON files as ``anyshot evaluate`` writes them (``{"summary", "config",
"episodes"}``, one method and one setting per file) or bundles ``{"results": [such objects]}``.
Each (dataset, setting, method) becomes one row: mean accuracy, the standard deviation across
episodes, the 95% confidence interval of the mean (``1.96 std / sqrt(n)``) and the number of
episodes, all recomputed from the per-episode records. Accuracies in the report are percentages.

Output (:func:`write_report`), in ``DIR``:

* ``NAME.md`` — the tables, the warnings and the plots;
* ``NAME.csv`` — one line per row, full precision;
* ``NAME-hardness.csv`` — per dataset and method, the least-squares line of accuracy (%) against
  episode hardness over every episode that has a hardness (``scope`` = "all settings": a
  dataset's settings pooled; then one line per setting), Pearson's r, and the area under the
  line (``-intercept^2 / (2 slope)``, or empty with the reason);
* ``plots/NAME-{hardness,ways,shots}-DATASET.png`` — accuracy against hardness, against ways
  (fixed and many-way settings, one line per method and shot count) and against shots (one line
  per method and way count), drawn only where there are at least two points on the x axis; lines
  with fewer points than the longest of their plot are left out (they stay in the tables). A plot
  that does not apply (no episode with a hardness, a single way or shot count) is not drawn and
  :attr:`Report.skipped_plots` (and ``NAME.md``) says why;
* ``plots/NAME-reliability-DATASET.png`` -- the reliability diagram: per method and setting, the
  accuracy of the query predictions in each of 15 equal-width confidence bins against their
  mean confidence (max softmax probability), the diagonal being perfect calibration; from the
  calibration bins ``anyshot evaluate`` records per episode.

Every row also carries the expected calibration error of its query predictions pooled (ECE,
:mod:`anyshot.calibration`; an outlier's prediction counts as wrong) and, for open-set results
(``--protocol open-set``), the ECE of the inlier queries and the mean AUROC and AUPR of the
outlier score with their 95% CIs; the row's accuracy is then the inlier queries' accuracy.

Warnings (in ``NAME.md`` and returned, for the command line to print on stderr): a 95% CI wider
than ``± 2`` points, and fewer than 100 episodes in a many-way setting (20 ways or more).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyshot.errors import ResultsFileError
from anyshot.evaluation.records import (
    calibration_summary,
    open_set_summary,
    pooled_bins,
    summarize,
)
from anyshot.hardness import fit_accuracy_line
from anyshot.io import atomic_write_text

__all__ = [
    "CI_WARNING_POINTS",
    "MANY_WAY",
    "MIN_MANY_WAY_EPISODES",
    "POOLED",
    "Calibration",
    "Report",
    "ResultBlock",
    "Row",
    "Setting",
    "hardness_fits",
    "load_results",
    "method_label",
    "summary_rows",
    "write_report",
]

#: Warn when the 95% CI half-width exceeds this many accuracy points.
CI_WARNING_POINTS = 2.0
#: Settings with at least this many ways count as many-way ...
MANY_WAY = 20
#: ... and warn with fewer episodes than this.
MIN_MANY_WAY_EPISODES = 100

_PROTOCOL_ORDER = {
    "fixed": 0,
    "many-way": 1,
    "imbalanced": 2,
    "present-classes": 3,
    "open-set": 4,
    "variable": 5,
}
_LABEL_SKIP = {"seed", "device", "batch_size"}


@dataclass(frozen=True)
class Setting:
    """What kind of episodes a result was measured on.

    Attributes:
        protocol: ``fixed``, ``many-way``, ``imbalanced``, ``present-classes``, ``open-set``
            or ``variable``.
        ways: classes per episode (``None`` for variable-way episodes).
        shots: shots per class when every class has the same count, else ``None``.
        queries: queries per class (fixed / many-way) or per episode (imbalanced,
            present-classes), or ``None``.
        label: a human-readable name; settings are compared by it.
    """

    protocol: str
    ways: int | None
    shots: int | None
    queries: int | None
    label: str

    def sort_key(self) -> tuple[int, int, int, str]:
        return (
            _PROTOCOL_ORDER.get(self.protocol, 9),
            self.ways or 0,
            self.shots or 0,
            self.label,
        )


@dataclass(frozen=True)
class ResultBlock:
    """One method evaluated on one setting of one dataset: its per-episode records."""

    source: str
    dataset: str
    method: str
    setting: Setting
    records: list[dict[str, Any]]
    #: why the run has fewer episodes than it asked for (Ctrl-C, an unreadable image), or None
    cut_short: str | None = None


@dataclass(frozen=True)
class Row:
    """One line of the accuracy table (accuracies in %)."""

    dataset: str
    setting: Setting
    method: str
    episodes: int
    mean: float
    std: float
    ci95: float
    hardness_mean: float | None
    source: str
    warnings: tuple[str, ...] = ()
    calibration: Calibration | None = None


@dataclass(frozen=True)
class Calibration:
    """A row's calibration and outlier figures (%): the ECE of every query prediction pooled
    and, for open-set results, the inlier queries' ECE, the AUROC and AUPR of the outlier
    score (``score``: ``"nearest-mean"``, the product's, or ``"msp"`` in older results) and the
    AUROC of the method's maximum softmax probability (mean and 95% CI over episodes);
    ``None`` where they do not apply."""

    ece: float
    predictions: int
    inlier_ece: float | None = None
    auroc: tuple[float, float] | None = None
    aupr: tuple[float, float] | None = None
    msp_auroc: tuple[float, float] | None = None
    score: str | None = None


def _calibration(records: Sequence[dict[str, Any]]) -> Calibration | None:
    """The :class:`Calibration` of a block's records, or ``None`` without calibration bins."""
    pooled = calibration_summary(records)
    if not pooled:
        return None
    open_set = open_set_summary(records)

    def pair(name: str) -> tuple[float, float] | None:
        if f"{name}_mean" not in open_set:
            return None
        return (100 * open_set[f"{name}_mean"], 100 * open_set[f"{name}_ci95"])

    inlier = open_set.get("inlier_ece")
    scores = {str(r.get("outlier_score", "msp")) for r in records if "auroc" in r}
    return Calibration(
        100 * pooled["ece"],
        int(pooled["ece_predictions"]),
        None if inlier is None else 100 * inlier,
        pair("auroc"),
        pair("aupr"),
        pair("msp_auroc") if "nearest-mean" in scores else pair("auroc"),
        " + ".join(sorted(scores)) or None,
    )


@dataclass
class Report:
    """What :func:`write_report` produced."""

    rows: list[Row]
    fits: list[dict[str, Any]]
    warnings: list[str]
    markdown: Path | None = None
    csv: Path | None = None
    hardness_csv: Path | None = None
    plots: list[Path] = field(default_factory=list)
    skipped_plots: list[str] = field(default_factory=list)


def _as_json(value: Any) -> Any:
    """``value`` as a results file holds it (a tuple is a list there)."""
    return list(value) if isinstance(value, tuple) else value


def method_label(config: dict[str, Any]) -> str:
    """A method's name for tables and legends: ``config["label"]`` if set; else the name of the
    preset it equals (:data:`anyshot.methods.presets.PRESETS`, e.g. ``recommended``); else
    name, scope and the options that differ from the method's defaults (e.g. ``transductive
    head T=0.1 lr=0.01``)."""
    if config.get("label"):
        return str(config["label"])
    name = str(config.get("method", "method"))
    options = dict(config.get("method_options") or {})
    from anyshot.methods import METHODS
    from anyshot.methods.presets import PRESETS
    from anyshot.methods.registry import method_name

    defaults: dict[str, Any] = {}
    cls = METHODS.get(name)
    if cls is not None and dataclasses.is_dataclass(cls):
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for preset_name, preset in PRESETS.items():
        settings = dataclasses.asdict(preset)
        if method_name(preset) == name and all(
            _as_json(options.get(key, defaults.get(key))) == _as_json(value)
            for key, value in settings.items()
            if key not in _LABEL_SKIP
        ):
            return preset_name
    parts = [name]
    if "scope" in options:
        parts.append(str(options.pop("scope")))
    short = {"temperature": "T", "entropy_weight": "lambda", "balance_weight": "balance"}
    for key in sorted(options):
        if key in _LABEL_SKIP or key not in defaults or options[key] == defaults[key]:
            continue
        parts.append(
            f"{short.get(key, key)}={options[key]:g}"
            if isinstance(options[key], float)
            else f"{short.get(key, key)}={options[key]}"
        )
    return " ".join(parts)


def _single_shot(shots: Any) -> int | None:
    values = shots if isinstance(shots, list) else [shots]
    ints = [int(v) for v in values if isinstance(v, int | float)]
    return ints[0] if ints and len(set(ints)) == 1 and len(ints) == len(values) else None


def _setting(config: dict[str, Any]) -> Setting:
    protocol = str(config.get("protocol", "fixed"))
    if protocol == "variable":
        return Setting(protocol, None, None, None, "variable ways and shots (Meta-Dataset)")
    ways = config.get("ways")
    ways = int(ways) if isinstance(ways, int | float) else None
    shots = _single_shot(config.get("shots"))
    shot_text = f"{shots}-shot" if shots is not None else f"shots {config.get('shots')}"
    if protocol == "imbalanced":
        total = config.get("total_queries")
        alpha = config.get("dirichlet_alpha")
        label = f"{ways}-way {shot_text}, {total} queries Dirichlet({alpha})"
        return Setting(protocol, ways, shots, int(total) if total else None, label)
    if protocol == "open-set":
        inliers, outliers = config.get("inlier_queries"), config.get("outlier_queries")
        label = (
            f"{ways}-way {shot_text}, {inliers} queries + {outliers} outliers from "
            f"{config.get('outlier_classes')} other classes"
        )
        total = int(inliers or 0) + int(outliers or 0)
        return Setting(protocol, ways, shots, total or None, label)
    if protocol == "present-classes":
        total = config.get("total_queries")
        label = (
            f"{ways}-way {shot_text}, {total} queries from "
            f"{config.get('present_classes')} present classes"
        )
        return Setting(protocol, ways, shots, int(total) if total else None, label)
    queries = config.get("queries")
    queries = int(queries) if isinstance(queries, int | float) else None
    label = f"{ways}-way {shot_text} {queries}q"
    if protocol == "many-way":
        label += " (many-way)"
    return Setting(protocol, ways, shots, queries, label)


def _blocks_of(obj: Any, source: str) -> list[ResultBlock]:
    if isinstance(obj, dict) and isinstance(obj.get("results"), list):
        blocks: list[ResultBlock] = []
        for number, item in enumerate(obj["results"]):
            blocks.extend(_blocks_of(item, f"{source}#{number}"))
        return blocks
    if not (
        isinstance(obj, dict)
        and isinstance(obj.get("config"), dict)
        and isinstance(obj.get("episodes"), list)
    ):
        raise ResultsFileError(
            f"{source}: not an anyshot results file (expected an object with 'config' and "
            "'episodes', as anyshot evaluate writes, or {'results': [...]})"
        )
    records = obj["episodes"]
    if not records or not all(
        isinstance(r, dict) and isinstance(r.get("accuracy"), int | float) for r in records
    ):
        raise ResultsFileError(f"{source}: every episode record needs a numeric 'accuracy'")
    config = obj["config"]
    dataset = " ".join(str(config[k]) for k in ("dataset", "split") if config.get(k)) or "dataset"
    if config.get("dataset") == "folder" and config.get("data_root"):  # one's own trees apart
        dataset += f" {Path(str(config['data_root'])).name}"
    setting = _setting(config)
    cut = _cut(config, len(records))
    return [ResultBlock(source, dataset, method_label(config), setting, records, cut)]


def _cut(config: dict[str, Any], finished: int) -> str | None:
    """Why a results file holds fewer episodes than its run asked for, or ``None``."""
    asked = config.get("episodes")
    count = f"only {finished}" + ("" if asked is None else f" of {asked}") + " episodes"
    if config.get("stopped_by"):
        return f"{count}: stopped by an image that could not be read ({config['stopped_by']})"
    if config.get("interrupted"):
        return f"{count}: interrupted (Ctrl-C)"
    return None


def load_results(paths: Iterable[str | os.PathLike[str]]) -> list[ResultBlock]:
    """Read results files (or bundles) into blocks, one per (dataset, setting, method).

    Raises:
        ResultsFileError: unreadable or malformed JSON, no files, or two blocks for the same
            dataset, setting and method (the message names both files).
    """
    blocks: list[ResultBlock] = []
    for path in paths:
        text_path = os.fspath(path)
        try:
            obj = json.loads(Path(text_path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ResultsFileError(f"results file {text_path!r} not found") from None
        except (OSError, json.JSONDecodeError) as error:
            raise ResultsFileError(f"cannot read results file {text_path!r}: {error}") from None
        blocks.extend(_blocks_of(obj, text_path))
    if not blocks:
        raise ResultsFileError("no results files given")
    seen: dict[tuple[str, str, str], str] = {}
    for block in blocks:
        key = (block.dataset, block.setting.label, block.method)
        if key in seen:
            raise ResultsFileError(
                f"{seen[key]} and {block.source} both hold {block.method!r} on {block.dataset} "
                f"{block.setting.label}; report each setting once (leave one file out, or give "
                'one run a different "label" in its results file\'s config)'
            )
        seen[key] = block.source
    return blocks


def _row_warnings(
    dataset: str, setting: Setting, method: str, n: int, std: float, ci: float
) -> tuple[str, ...]:
    where = f"{dataset}, {setting.label}, {method}"
    found = []
    if ci > CI_WARNING_POINTS:
        needed = math.ceil((1.96 * std / CI_WARNING_POINTS) ** 2)
        found.append(
            f"{where}: 95% CI ± {ci:.2f} points is wider than ± {CI_WARNING_POINTS:g} "
            f"({n} episodes, std {std:.2f}); about {needed} episodes would give ± "
            f"{CI_WARNING_POINTS:g}"
        )
    if n < 2:
        found.append(f"{where}: a single episode: its spread (std, CI) cannot be estimated")
    many_way = setting.protocol == "many-way" or (setting.ways or 0) >= MANY_WAY
    if many_way and n < MIN_MANY_WAY_EPISODES:
        found.append(
            f"{where}: only {n} episodes of a many-way setting (fewer than {MIN_MANY_WAY_EPISODES})"
        )
    return tuple(found)


def _cut_warning(block: ResultBlock) -> tuple[str, ...]:
    """The warning of a run cut short (see :attr:`ResultBlock.cut_short`), or none."""
    if block.cut_short is None:
        return ()
    where = f"{block.dataset}, {block.setting.label}, {block.method}"
    return (f"{where}: {block.cut_short}",)


def summary_rows(blocks: Sequence[ResultBlock]) -> list[Row]:
    """One :class:`Row` per block, statistics recomputed from its records, sorted for tables."""
    rows = []
    for block in blocks:
        stats = summarize(float(r["accuracy"]) for r in block.records)
        mean = 100 * float(stats["accuracy_mean"])
        std = 100 * float(stats["accuracy_std"])
        ci = 100 * float(stats["accuracy_ci95"])
        n = int(stats["episodes"])
        hardness = [float(r["hardness"]) for r in block.records if "hardness" in r]
        rows.append(
            Row(
                block.dataset,
                block.setting,
                block.method,
                n,
                mean,
                std,
                ci,
                float(np.mean(hardness)) if hardness else None,
                block.source,
                _row_warnings(block.dataset, block.setting, block.method, n, std, ci)
                + _cut_warning(block),
                _calibration(block.records),
            )
        )
    rows.sort(key=lambda r: (r.dataset, r.setting.sort_key(), r.method))
    return rows


#: ``scope`` of the fits over all of a dataset's settings (the others name one setting).
POOLED = "all settings"


def hardness_fits(blocks: Sequence[ResultBlock]) -> list[dict[str, Any]]:
    """Lines of accuracy (%) on hardness: per dataset and method over all its episodes
    (``scope`` = :data:`POOLED`), then per dataset, setting and method (``scope`` = the
    setting's label). Hardness grows with the number of ways, so the pooled line mixes the
    effect of ways with the differences between episodes of one setting; the per-setting lines
    show the latter alone."""
    groups: dict[tuple[str, str, str], tuple[list[float], list[float], set[str]]] = {}
    for block in blocks:
        points = [r for r in block.records if "hardness" in r]
        if not points:
            continue
        for scope in (POOLED, block.setting.label):
            xs, ys, settings = groups.setdefault(
                (block.dataset, scope, block.method), ([], [], set())
            )
            xs.extend(float(r["hardness"]) for r in points)
            ys.extend(100 * float(r["accuracy"]) for r in points)
            settings.add(block.setting.label)
    order = {(b.dataset, b.setting.label): (b.setting.sort_key(), b.setting.label) for b in blocks}
    fits = []
    for (dataset, scope, method), (xs, ys, settings) in sorted(
        groups.items(),
        key=lambda item: (
            item[0][0],
            item[0][1] != POOLED,
            order.get((item[0][0], item[0][1]), ((0, 0, 0, ""), "")),
            item[0][2],
        ),
    ):
        fit = fit_accuracy_line(xs, ys)
        fits.append(
            {
                "dataset": dataset,
                "scope": scope,
                "method": method,
                "episodes": fit.points,
                "settings": sorted(settings),
                "hardness_min": min(xs),
                "hardness_max": max(xs),
                "slope": fit.slope,
                "intercept": fit.intercept,
                "correlation": fit.correlation,
                "area": fit.area,
                "note": fit.note,
                "fit": fit,
                "hardness": xs,
                "accuracy": ys,
            }
        )
    return fits


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _csv_text(header: Sequence[str], lines: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for line in lines:
        writer.writerow(
            [
                "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
                for v in line
            ]
        )
    return buffer.getvalue()


#: The curve plots: x axis, the setting held fixed along a line, the x label, and an example
#: of the ``anyshot evaluate`` options that give the plot its points.
CURVES = (
    ("ways", "shots", "ways (classes per episode)", "--ways 5,10,20"),
    ("shots", "ways", "shots (support images per class)", "--shots 1,5 --sweep"),
)


def _curve_plots(
    rows: Sequence[Row], dataset: str, plots: Path, name: str, skipped: list[str]
) -> list[Path]:
    """The accuracy-versus-ways and -shots plots of ``dataset``; the paths written. Why a plot
    is not drawn is appended to ``skipped``."""
    from anyshot.plots import accuracy_plot

    fixed = [
        r
        for r in rows
        if r.dataset == dataset
        and r.setting.protocol in ("fixed", "many-way")
        and r.setting.ways is not None
        and r.setting.shots is not None
    ]
    written = []
    for axis, other, xlabel, example in CURVES:
        series = _curve_series(fixed, axis, other)
        if series:
            path = plots / f"{name}-{axis}-{_slug(dataset)}.png"
            written.append(
                accuracy_plot(path, f"{dataset}: accuracy versus {axis}", xlabel, series)
            )
            continue
        values = sorted({int(getattr(r.setting, axis)) for r in fixed})
        if not fixed:
            why = "it needs fixed or many-way settings and there are none"
        elif len(values) < 2:
            why = (
                f"every fixed or many-way setting has {axis} = {values[0]} (the plots leave the "
                f"other protocols out); it needs two or more (e.g. anyshot evaluate ... {example})"
            )
        else:
            why = f"no method has two {axis} counts at the same {other[:-1]} count"
        skipped.append(f"{dataset}: no accuracy-versus-{axis} plot: {why}")
    return written


def _curve_series(fixed: Sequence[Row], axis: str, other: str) -> list[Any]:
    """One line per (method, ``other`` value) with two or more ``axis`` values; lines shorter
    than the longest are left out (e.g. a 10-way setting run at 1 and 5 shots only, in a plot of
    a 1-2-5-10-shot sweep at 5 ways): they stay in the tables."""
    from anyshot.plots import CurveSeries

    groups: dict[tuple[str, int], list[Row]] = {}
    for row in fixed:
        key = (row.method, int(getattr(row.setting, other)))
        groups.setdefault(key, []).append(row)
    methods = sorted({method for method, _ in groups})
    values = sorted({value for _, value in groups})
    series = []
    for (method, value), members in sorted(groups.items()):
        by_x: dict[int, Row] = {}
        for row in members:  # one point per x (several query counts: keep the most episodes)
            x = int(getattr(row.setting, axis))
            if x not in by_x or row.episodes > by_x[x].episodes:
                by_x[x] = row
        if len(by_x) < 2:
            continue
        xs = sorted(by_x)
        series.append(
            CurveSeries(
                f"{method}, {value}-{other[:-1]}",
                xs,
                [by_x[x].mean for x in xs],
                [by_x[x].ci95 for x in xs],
                colour=methods.index(method),
                style=values.index(value),
            )
        )
    longest = max((len(entry.x) for entry in series), default=0)
    return [entry for entry in series if len(entry.x) == longest]


def write_report(
    results: Sequence[str | os.PathLike[str]] | Sequence[ResultBlock],
    output: str | os.PathLike[str],
    *,
    name: str = "report",
    plots: bool = True,
) -> Report:
    """Build the tables, warnings, hardness lines and plots of ``results`` into ``output``.

    Args:
        results: results file paths, or blocks from :func:`load_results`.
        output: the folder to write into (created).
        name: stem of every file written (``NAME.md``, ``NAME.csv``, ``plots/NAME-*.png``).
        plots: draw the PNG plots.

    Returns:
        The :class:`Report` with its rows, fits, warnings and the paths written.
    """
    blocks: list[ResultBlock] = (
        list(results)  # type: ignore[arg-type]
        if results and all(isinstance(r, ResultBlock) for r in results)
        else load_results(results)  # type: ignore[arg-type]
    )
    folder = Path(output)
    rows = summary_rows(blocks)
    fits = hardness_fits(blocks)
    warnings = [w for row in rows for w in row.warnings]
    report = Report(
        rows,
        [{k: v for k, v in f.items() if k not in ("fit", "hardness", "accuracy")} for f in fits],
        warnings,
    )

    datasets = sorted({row.dataset for row in rows})
    if plots:
        report.plots.extend(
            _plots(blocks, rows, fits, datasets, folder / "plots", name, report.skipped_plots)
        )
    report.csv = atomic_write_text(folder / f"{name}.csv", _rows_csv(rows))
    report.hardness_csv = atomic_write_text(folder / f"{name}-hardness.csv", _fits_csv(fits))
    report.markdown = atomic_write_text(
        folder / f"{name}.md", _markdown(report, datasets, folder, blocks)
    )
    return report


def _plots(
    blocks: Sequence[ResultBlock],
    rows: Sequence[Row],
    fits: Sequence[dict[str, Any]],
    datasets: Sequence[str],
    plot_folder: Path,
    name: str,
    skipped: list[str],
) -> list[Path]:
    """The hardness scatter and the curve plots of every dataset; the paths written. Why a plot
    is not drawn is appended to ``skipped``."""
    from anyshot.plots import ScatterSeries, hardness_plot

    written: list[Path] = []
    for dataset in datasets:
        series = [
            ScatterSeries(f["method"], f["hardness"], f["accuracy"], f["fit"])
            for f in fits
            if f["dataset"] == dataset and f["scope"] == POOLED
        ]
        if series:
            written.append(
                hardness_plot(
                    plot_folder / f"{name}-hardness-{_slug(dataset)}.png",
                    f"{dataset}: accuracy versus episode hardness",
                    series,
                )
            )
        else:
            skipped.append(
                f"{dataset}: no accuracy-versus-hardness plot: no episode has a hardness (run "
                "anyshot evaluate with --hardness)"
            )
        written.extend(_curve_plots(rows, dataset, plot_folder, name, skipped))
        written.extend(_reliability_plots(blocks, dataset, plot_folder, name, skipped))
    return written


def _reliability_plots(
    blocks: Sequence[ResultBlock], dataset: str, plots: Path, name: str, skipped: list[str]
) -> list[Path]:
    """The reliability diagram of ``dataset`` (one line per method and setting with calibration
    bins), or why there is none (appended to ``skipped``)."""
    from anyshot.plots import ReliabilitySeries, reliability_plot

    series = []
    for block in sorted(blocks, key=lambda b: (b.setting.sort_key(), b.method)):
        bins = pooled_bins(block.records) if block.dataset == dataset else None
        if bins is None or bins.total == 0:
            continue
        full = bins.count > 0
        series.append(
            ReliabilitySeries(
                f"{block.method}, {block.setting.label}",
                (100 * bins.confidence[full] / bins.count[full]).tolist(),
                (100 * bins.correct[full] / bins.count[full]).tolist(),
                100 * bins.ece(),
            )
        )
    if not series:
        skipped.append(
            f"{dataset}: no reliability diagram: no result holds calibration bins (results "
            "written before anyshot recorded them; run anyshot evaluate again)"
        )
        return []
    path = plots / f"{name}-reliability-{_slug(dataset)}.png"
    return [reliability_plot(path, f"{dataset}: reliability of the query predictions", series)]


ROWS_HEADER = (
    "dataset",
    "setting",
    "protocol",
    "ways",
    "shots",
    "queries",
    "method",
    "episodes",
    "accuracy_mean_pct",
    "accuracy_std_pct",
    "accuracy_ci95_pct",
    "hardness_mean",
    "ece_pct",
    "inlier_ece_pct",
    "auroc_mean_pct",
    "auroc_ci95_pct",
    "aupr_mean_pct",
    "aupr_ci95_pct",
    "msp_auroc_mean_pct",
    "msp_auroc_ci95_pct",
    "outlier_score",
    "source",
    "warning",
)

FITS_HEADER = (
    "dataset",
    "scope",
    "method",
    "episodes",
    "hardness_min",
    "hardness_max",
    "slope_pct",
    "intercept_pct",
    "correlation",
    "area",
    "note",
    "settings",
)


def _rows_csv(rows: Sequence[Row]) -> str:
    """The summary rows as CSV text (:data:`ROWS_HEADER`)."""
    return _csv_text(
        list(ROWS_HEADER),
        (
            [
                r.dataset,
                r.setting.label,
                r.setting.protocol,
                r.setting.ways,
                r.setting.shots,
                r.setting.queries,
                r.method,
                r.episodes,
                repr(r.mean),
                repr(r.std) if r.episodes > 1 else None,  # one episode: no spread to estimate
                repr(r.ci95) if r.episodes > 1 else None,
                None if r.hardness_mean is None else repr(r.hardness_mean),
                *_calibration_cells(r.calibration),
                r.source,
                " | ".join(r.warnings),
            ]
            for r in rows
        ),
    )


def _calibration_cells(calibration: Calibration | None) -> list[str | None]:
    """The CSV cells of a row's :class:`Calibration` (empty where it does not apply)."""
    if calibration is None:
        return [None] * 9
    auroc, aupr, msp = calibration.auroc, calibration.aupr, calibration.msp_auroc
    values = [
        calibration.ece,
        calibration.inlier_ece,
        *(auroc if auroc is not None else (None, None)),
        *(aupr if aupr is not None else (None, None)),
        *(msp if msp is not None else (None, None)),
    ]
    return [None if v is None else repr(v) for v in values] + [calibration.score]


def _fits_csv(fits: Sequence[dict[str, Any]]) -> str:
    """The accuracy-versus-hardness fits as CSV text (:data:`FITS_HEADER`)."""
    return _csv_text(
        list(FITS_HEADER),
        (
            [
                f["dataset"],
                f["scope"],
                f["method"],
                f["episodes"],
                repr(f["hardness_min"]),
                repr(f["hardness_max"]),
                repr(f["slope"]),
                repr(f["intercept"]),
                repr(f["correlation"]),
                repr(f["area"]) if math.isfinite(f["area"]) else None,
                f["note"],
                "; ".join(f["settings"]),
            ]
            for f in fits
        ),
    )


def _fit_line(fit: dict[str, Any], where: str) -> str:
    area = _number(fit["area"], 1) if math.isfinite(fit["area"]) else f"n/a ({fit['note']})"
    return (
        f"| {where} | {fit['method']} | {fit['episodes']} | "
        f"{fit['hardness_min']:.2f} to {fit['hardness_max']:.2f} | {_number(fit['slope'])} | "
        f"{_number(fit['intercept'])} | {_number(fit['correlation'])} | {area} |"
    )


def _calibration_markdown(rows: Sequence[Row], datasets: Sequence[str]) -> list[str]:
    """The "Calibration and outliers" section: rows with calibration bins only."""
    found = [r for r in rows if r.calibration is not None]
    if not found:
        return []
    lines = [
        "## Calibration and outliers",
        "",
        "ECE in %: expected calibration error of all query predictions pooled (15 equal-width "
        "bins of the max softmax probability; an outlier's prediction counts as wrong); inlier "
        "ECE: the inlier queries alone. AUROC and AUPR in % (mean ± 95% CI over episodes): how "
        "well the outlier score ranks outliers above inliers (score nearest-mean: the "
        "product's, the cosine distance to the nearest class mean of the frozen embeddings "
        "(averaged with that of centred embeddings where the queries cover the classes), "
        "the same for every method; msp: 1 - max softmax probability, in results files "
        "written before it); MSP AUROC: the method's own 1 - max softmax probability, "
        "outliers as positives; open-set settings only (their accuracy above is the inlier "
        "queries' accuracy).",
        "",
    ]
    for dataset in datasets:
        lines += [
            f"### {dataset}",
            "",
            "| setting | method | ECE | inlier ECE | AUROC | AUPR | score | MSP AUROC "
            "| predictions |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in found if r.dataset == dataset):
            c = row.calibration
            assert c is not None
            auroc, aupr, msp = (
                "n/a" if v is None else f"{v[0]:.2f} ± {v[1]:.2f}"
                for v in (c.auroc, c.aupr, c.msp_auroc)
            )
            lines.append(
                f"| {row.setting.label} | {row.method} | {c.ece:.2f} | "
                f"{_number(c.inlier_ece)} | {auroc} | {aupr} | {c.score or 'n/a'} | {msp} | "
                f"{c.predictions} |"
            )
        lines.append("")
    return lines


def _markdown(
    report: Report, datasets: Sequence[str], folder: Path, blocks: Sequence[ResultBlock]
) -> str:
    sources = sorted({b.source.split("#")[0] for b in blocks})
    lines = [
        "# anyshot report",
        "",
        f"Inputs: {', '.join(f'`{s}`' for s in sources)}.",
        "",
        "Accuracy in %: mean over episodes; std = standard deviation across episodes (the spread "
        "one task can show); 95% CI = 1.96 std / sqrt(episodes), the uncertainty of the mean.",
        "",
    ]
    if report.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report.warnings] + [""]
    lines += ["## Accuracy", ""]
    for dataset in datasets:
        lines += [
            f"### {dataset}",
            "",
            "| setting | method | mean | std | 95% CI | episodes | hardness |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in report.rows if r.dataset == dataset):
            flag = " ⚠" if row.warnings else ""
            lines.append(
                f"| {row.setting.label} | {row.method} | {row.mean:.2f} | "
                + (f"{row.std:.2f} | ± {row.ci95:.2f}{flag}" if row.episodes > 1 else "n/a | n/a")
                + f" | {row.episodes} | {_number(row.hardness_mean)} |"
            )
        lines.append("")
    lines += _calibration_markdown(report.rows, datasets)
    pooled = [f for f in report.fits if f["scope"] == POOLED]
    if pooled:
        lines += [
            "## Accuracy versus hardness",
            "",
            "Least-squares line accuracy (%) = intercept + slope x hardness over every episode "
            "with a hardness (all settings of a dataset pooled); r = Pearson's correlation; "
            "area = -intercept^2 / (2 slope), the area under the line in the first quadrant "
            "(% x hardness units).",
            "",
            "| dataset | method | episodes | hardness range | slope | intercept | r | area |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for fit in pooled:
            lines.append(_fit_line(fit, fit["dataset"]))
        lines += [
            "",
            "Within one setting (hardness grows with the number of ways, so the pooled line also "
            "measures the ways; these lines only compare episodes of the same kind):",
            "",
            "| dataset, setting | method | episodes | hardness range | slope | intercept | r | "
            "area |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for fit in report.fits:
            if fit["scope"] != POOLED:
                lines.append(_fit_line(fit, f"{fit['dataset']}, {fit['scope']}"))
        lines.append("")
    if report.plots or report.skipped_plots:
        lines += ["## Plots", ""]
        for path in report.plots:
            relative = path.relative_to(folder).as_posix()
            lines += [f"![{path.stem}]({relative})", ""]
        if report.skipped_plots:
            lines += ["Not drawn:", ""] + [f"- {why}" for why in report.skipped_plots] + [""]
    return "\n".join(lines)
