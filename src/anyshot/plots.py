"""PNG plots of evaluation results (matplotlib, Agg canvas: no display, no global pyplot state).

* :func:`hardness_plot` — accuracy of every episode against its hardness, one colour and one
  least-squares line per method.
* :func:`accuracy_plot` — mean accuracy with its 95% CI against ways or shots, one line per series.
* :func:`reliability_plot` — the reliability diagram: accuracy against mean confidence per
  confidence bin, one line per series, with the diagonal of perfect calibration.

Each function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anyshot.io import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from anyshot.hardness import LineFit

__all__ = [
    "CurveSeries",
    "ReliabilitySeries",
    "ScatterSeries",
    "accuracy_plot",
    "hardness_plot",
    "reliability_plot",
]

DPI = 100


@dataclass(frozen=True)
class ScatterSeries:
    """One method's episodes: hardness ``[n]``, accuracy ``[n]`` (%) and the fitted line."""

    label: str
    hardness: Sequence[float]
    accuracy: Sequence[float]
    fit: LineFit


@dataclass(frozen=True)
class CurveSeries:
    """One line of an accuracy plot: x values, mean accuracies (%) and CI half-widths (%).

    ``colour`` and ``style`` index the colour cycle and the line styles (e.g. one colour per
    method, one style per shot count); ``-1`` = the series' position.
    """

    label: str
    x: Sequence[float]
    mean: Sequence[float]
    ci95: Sequence[float]
    colour: int = -1
    style: int = 0


@dataclass(frozen=True)
class ReliabilitySeries:
    """One line of a reliability diagram: per non-empty confidence bin, the mean confidence
    ``[b]`` and the accuracy ``[b]`` (both %), and the series' ECE (%)."""

    label: str
    confidence: Sequence[float]
    accuracy: Sequence[float]
    ece: float


def _figure() -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(7.0, 4.8), dpi=DPI, layout="constrained")


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return atomic_write_bytes(path, buffer.getvalue())


def hardness_plot(
    path: str | os.PathLike[str], title: str, series: Sequence[ScatterSeries]
) -> Path:
    """Scatter accuracy (%) against hardness per method, with each method's fitted line.

    The legend gives each line's slope, intercept and area under it (or why there is none).
    """
    figure = _figure()
    axes = figure.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(series))]
    upper = max((max(s.hardness) for s in series if len(s.hardness)), default=1.0)
    lower = min((min(s.hardness) for s in series if len(s.hardness)), default=0.0)
    for colour, entry in zip(colours, series, strict=True):
        alpha = 0.6 if len(entry.hardness) < 300 else 0.2
        axes.scatter(entry.hardness, entry.accuracy, s=8, alpha=alpha, color=colour, linewidths=0)
        fit = entry.fit
        if math.isfinite(fit.slope):
            xs = np.linspace(min(0.0, lower), upper, 50)
            area = f"area {fit.area:.0f}" if math.isfinite(fit.area) else "area n/a"
            axes.plot(
                xs,
                fit.intercept + fit.slope * xs,
                color=colour,
                linewidth=2,
                label=f"{entry.label}: {fit.intercept:.1f} {'-' if fit.slope < 0 else '+'} "
                f"{abs(fit.slope):.1f}·Ω, {area}",
            )
        else:
            axes.plot([], [], color=colour, label=f"{entry.label}: no line ({fit.note})")
    axes.set_xlabel("episode hardness Ω (mean log-odds against the true class)")
    axes.set_ylabel("episode accuracy (%)")
    axes.set_ylim(-2, 102)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower left")
    return _save(figure, path)


def accuracy_plot(
    path: str | os.PathLike[str],
    title: str,
    xlabel: str,
    series: Sequence[CurveSeries],
    *,
    log_x: bool = True,
) -> Path:
    """Mean accuracy (%) with 95% CI error bars against ``xlabel``'s values, one line per series."""
    figure = _figure()
    axes = figure.add_subplot()
    ticks: set[float] = set()
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]
    for position, entry in enumerate(series):
        colour = f"C{(position if entry.colour < 0 else entry.colour) % 10}"
        order = np.argsort(np.asarray(entry.x, dtype=np.float64))
        x = np.asarray(entry.x, dtype=np.float64)[order]
        axes.errorbar(
            x,
            np.asarray(entry.mean)[order],
            yerr=np.asarray(entry.ci95)[order],
            color=colour,
            linestyle=styles[entry.style % len(styles)],
            marker=markers[entry.style % len(markers)],
            markersize=4,
            capsize=3,
            label=entry.label,
        )
        ticks.update(x.tolist())
    if log_x:
        axes.set_xscale("log", base=2)
    axes.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
    axes.set_xlabel(xlabel)
    axes.set_ylabel("accuracy (%), mean ± 95% CI")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, path)


def reliability_plot(
    path: str | os.PathLike[str], title: str, series: Sequence[ReliabilitySeries]
) -> Path:
    """Accuracy (%) against mean confidence (%) per confidence bin, one line per series (its
    ECE in the legend); the dashed diagonal is perfect calibration (below it: overconfident)."""
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot([0, 100], [0, 100], color="0.5", linestyle="--", linewidth=1, label="calibrated")
    for position, entry in enumerate(series):
        axes.plot(
            entry.confidence,
            entry.accuracy,
            color=f"C{position % 10}",
            marker="o",
            markersize=4,
            label=f"{entry.label}: ECE {entry.ece:.1f}%",
        )
    axes.set_xlim(0, 100)
    axes.set_ylim(-2, 102)
    axes.set_xlabel("confidence: max softmax probability (%), mean of the bin")
    axes.set_ylabel("accuracy of the bin's predictions (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    return _save(figure, path)
