"""The any-shot curve as a user meets it (issue 16): ``classify`` on class folders, on a CPU.

Each cell draws ``ways`` classes of a dataset's test classes (seeded), writes ``shots``
labelled images per class as a class-per-folder tree and ``queries`` other images per class as
the images to classify, and runs, each in a fresh subprocess (so that its peak resident memory,
``ru_maxrss``, is its own):

* ``default``: ``FewShotClassifier()`` (``--scope auto``, the default) ``.classify(...)``,
  cold (no feature cache), as ``anyshot classify`` runs it: its accuracy, wall time (loading
  the backbone, embedding, choosing, training, predicting), peak memory, and what the rule
  chose and why;
* ``lr``: the practitioner's anchor, a logistic regression (scikit-learn, C by 3-fold
  cross-validation; ``benchmarks/any_shot_curve.py``) on the frozen backbone's embeddings at
  224 px of the same images (its time: embedding plus fitting).

Cells (name ``<domain>-<ways>w<shots>s``): Omniglot test characters (105 px; 20 images each:
1, 5, 15 shots, 5 queries), mini-ImageNet test classes (84 px; 20 ways, 1, 5, 100 shots, 10
queries; 20 ways, 500 shots: the peak memory of a large fit) and scikit-learn's digits (8 px; no
split: 10 ways, 100 shots, 20 queries).
Full fine-tuning, the second anchor, is in ``studies/scope-curve`` (GPU); on a 2-core CPU at
224 px it takes tens of minutes per cell.

The committed results (``benchmarks/results/any-shot-practitioner-*.json``)::

    export OMP_NUM_THREADS=2 PYTHONPATH=src:benchmarks R=benchmarks/results/any-shot-practitioner
    P=".venv/bin/python benchmarks/any_shot_practitioner.py"
    $P --cells omni-20w1s,omni-20w5s,omni-20w15s --episodes 3 --output $R-omniglot.json
    $P --cells mini-20w1s,mini-20w5s --episodes 3 --output $R-mini.json
    $P --cells mini-20w100s --episodes 3 --output $R-mini-100.json
    $P --cells digits-10w100s --output $R-digits.json
    $P --cells mini-20w500s --rows default --output $R-500.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness.cli import DATA_ROOT
from harness.output import environment, peak_rss_mb, write_json

#: cell -> (dataset, ways, shots, queries per class)
CELLS: dict[str, tuple[str, int, int, int]] = {
    "omni-20w1s": ("omniglot", 20, 1, 5),
    "omni-20w5s": ("omniglot", 20, 5, 5),
    "omni-20w15s": ("omniglot", 20, 15, 5),
    "mini-20w1s": ("mini-imagenet", 20, 1, 10),
    "mini-20w5s": ("mini-imagenet", 20, 5, 10),
    "mini-20w100s": ("mini-imagenet", 20, 100, 10),
    "mini-20w500s": ("mini-imagenet", 20, 500, 10),
    "digits-10w100s": ("digits", 10, 100, 20),
}


def write_cell(cell: str, episode: int, root: Path, data_root: Path, seed: int) -> None:
    """``root/support/<class>/<i>.png`` and ``root/query/<class>/<i>.png`` for the cell's
    episode (classes and images drawn with ``numpy`` seeded by ``(seed, episode, cell)``)."""
    from anyshot.data import load_dataset

    name, ways, shots, queries = CELLS[cell]
    if name == "digits":
        dataset = load_dataset("folder", write_digits(root.parent / "digits"), "val")
    else:
        dataset = load_dataset(name, data_root / name, "test")
    rng = np.random.default_rng([seed, episode, sum(map(ord, cell))])
    by_class = dataset.indices_by_class()
    for k in rng.choice(len(by_class), size=ways, replace=False):
        chosen = rng.choice(by_class[k], size=shots + queries, replace=False)
        for i, index in enumerate(chosen):
            part = "support" if i < shots else "query"
            path = root / part / f"class{int(k):04d}" / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            dataset.image(int(index)).save(path)


def write_digits(root: Path) -> Path:
    """scikit-learn's digits as ``root/<digit>/<index>.png`` (8x8 px, written once)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    if root.is_dir():
        return root
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (np.asarray(image) * 255 / 16).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")
    return root


def files(root: Path) -> tuple[list[Path], list[str]]:
    paths = sorted(root.rglob("*.png"))
    return paths, [p.parent.name for p in paths]


def run_default(root: Path) -> dict[str, Any]:
    """``FewShotClassifier().classify`` cold; accuracy, seconds, what was chosen."""
    from anyshot.classifier import FewShotClassifier

    support, labels = files(root / "support")
    query, truth = files(root / "query")
    began = time.perf_counter()
    model = FewShotClassifier(cache_dir=False)
    probabilities, _ = model.classify(support, labels, query)
    seconds = time.perf_counter() - began
    predicted = [model.classes_[int(k)] for k in probabilities.argmax(1)]
    info = model.fit_info_
    return {
        "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
        "seconds": seconds,
        "scope": info["scope"],
        "scope_reason": info["scope_reason"],
        "epochs": info["epochs"],
        "image_size": model.preprocessing_.image_size,
    }


def run_lr(root: Path) -> dict[str, Any]:
    """The logistic regression on frozen 224 px embeddings of the same images."""
    import torch

    from any_shot_curve import fitted_regression
    from anyshot.backbones import load_backbone
    from anyshot.embedding import ImageList
    from anyshot.methods.frozen import frozen_forward

    support, labels = files(root / "support")
    query, truth = files(root / "query")
    began = time.perf_counter()
    backbone = load_backbone("efficientnet-lite0").eval()

    def embed(paths: list[Path]) -> np.ndarray:
        images = ImageList(paths, backbone.preprocessing)
        with torch.inference_mode():
            return frozen_forward(backbone, images, batch_size=32).double().numpy()

    classes = sorted(set(labels))
    targets = np.asarray([classes.index(label) for label in labels])
    regression = fitted_regression(embed(support), targets)
    predicted = [classes[int(k)] for k in regression.predict(embed(query))]
    return {
        "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
        "seconds": time.perf_counter() - began,
    }


def one(args: argparse.Namespace) -> None:
    """The ``--one`` subprocess: a row on one written cell; prints its JSON record."""
    root = Path(args.one)
    record = run_default(root) if args.row == "default" else run_lr(root)
    record["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated cell names")
    parser.add_argument("--episodes", type=int, default=1, help="episodes per cell")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", default="default,lr")
    parser.add_argument("--output", type=Path, required=True, help="results JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    records: list[dict[str, Any]] = []
    for cell in args.cells.split(","):
        for episode in range(args.episodes):
            with tempfile.TemporaryDirectory() as folder:
                root = Path(folder) / "cell"
                write_cell(cell, episode, root, args.data_root, args.seed)
                for row in args.rows.split(","):
                    command = [sys.executable, __file__, "--output", "-", "--one", str(root),
                               "--row", row]  # fmt: skip
                    done = subprocess.run(command, capture_output=True, text=True, check=True)
                    record = {"cell": cell, "episode": episode, "row": row}
                    record.update(json.loads(done.stdout.strip().splitlines()[-1]))
                    records.append(record)
                    print(json.dumps(record), flush=True)
                    write_json(args.output, {"environment": environment(
                        "torch", "torch_threads", "OMP_NUM_THREADS", "machine", "cpu_count",
                        "cpu_capability"), "records": records})  # fmt: skip


if __name__ == "__main__":
    main()
