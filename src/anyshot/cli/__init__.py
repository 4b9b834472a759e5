"""The ``anyshot`` command: a thin layer over the Python API.

    anyshot evaluate --dataset omniglot --data-root ../shared/data/omniglot --split test \\
        --ways 5 --shots 1 --queries 15 --episodes 100 --method transductive --scope head \\
        --backbone efficientnet-lite0 --image-size 84 --output results.json
    anyshot demo
    anyshot classify --support photos/support --query photos/new --output predictions.csv
    anyshot fit --support photos/support --output model.pt   (then: predict, suggest)

One module per command group: :mod:`.evaluate` (``evaluate``, ``report``, ``demo``),
:mod:`.practitioner` (``classify``, ``fit``, ``predict``, ``suggest``), :mod:`.pretrain`; the
argument types, shared option groups and the arguments -> method function live in
:mod:`.options`. Each subparser stores its runner as ``args.run``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from anyshot import __version__
from anyshot.cli import evaluate, practitioner, pretrain
from anyshot.errors import AnyshotError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``anyshot`` command."""
    parser = argparse.ArgumentParser(
        prog="anyshot",
        description="Few-shot image classification with any number of shots: support-based "
        "initialisation and transductive fine-tuning (Dhillon et al., ICLR 2020).",
    )
    parser.add_argument("--version", action="version", version=f"anyshot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    evaluate.add_commands(sub)
    practitioner.add_commands(sub)
    pretrain.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anyshot`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "threads"):
        import torch

        from anyshot.threads import default_threads

        torch.set_num_threads(args.threads or default_threads())
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            status: int = args.run(args)
    except (AnyshotError, ValueError, TypeError, FileNotFoundError) as error:
        print(f"anyshot: error: {error}", file=sys.stderr)
        return 2
    if status == 0 and not getattr(args, "quiet", False) and getattr(args, "timed", True):
        print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return status


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
    **_: Any,
) -> None:
    """A warning as a line of the command's own on stderr, without Python's file, line and
    source: ``anyshot: warning: ...`` for anyshot's, ``anyshot: warning (from Pillow,
    DecompressionBombWarning): ...`` for a library's; written above any progress bar."""
    from tqdm import tqdm

    package = Path(__file__).resolve().parents[1]  # src/anyshot
    try:
        ours = Path(filename).resolve().is_relative_to(package)
    except OSError:
        ours = False
    origin = Path(filename).parts
    source = "" if ours else f" (from {_library(origin)}, {category.__name__})"
    tqdm.write(f"anyshot: warning{source}: {message}", file=sys.stderr if file is None else file)


def _library(parts: tuple[str, ...]) -> str:
    """The package a warning came from (the folder after ``site-packages`` or
    ``dist-packages``), or "Python"."""
    for folder in ("site-packages", "dist-packages"):
        if folder in parts[:-1]:
            name = parts[parts.index(folder) + 1]
            return {"PIL": "Pillow"}.get(name, name.removesuffix(".py"))
    return "Python"
