"""``anyshot classify`` when the query folder holds only a few of the support classes.

As a user would run it: class-per-folder support images of 10 mini-ImageNet **val** classes (5
each) and a query folder of 30 images of only 2 of them, seeded draws, the command line with its
defaults (224 px) versus ``--method support-init``; accuracy against the true classes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/classify_present_classes.py \\
        --output /tmp/classify-present.json
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.cli import DATA_ROOT, add_shared_arguments, script_parser
from harness.output import environment, write_json


def make_draw(
    root: Path, folder: Path, seed: int, ways: int, shots: int, present: int
) -> dict[str, str]:
    """Support and query folders (symlinks) of one seeded draw; the query images' classes."""
    rows = list(csv.reader((root / "val.csv").open()))[1:]
    by_class: dict[str, list[str]] = {}
    for name, label in rows:
        by_class.setdefault(label, []).append(name)
    rng = random.Random(seed)
    chosen = rng.sample(sorted(by_class), ways)
    truth: dict[str, str] = {}
    (folder / "query").mkdir(parents=True)
    for label in chosen:
        images = rng.sample(by_class[label], shots + 15)
        (folder / "support" / label).mkdir(parents=True)
        for name in images[:shots]:
            (folder / "support" / label / name).symlink_to(root / "images" / name)
        if label in chosen[:present]:
            for name in images[shots:]:
                (folder / "query" / name).symlink_to(root / "images" / name)
                truth[name] = label
    return truth


def classify(folder: Path, extra: list[str]) -> tuple[float, list[dict[str, str]]]:
    """Run ``anyshot classify`` on a draw's folders; ``(seconds, rows of its CSV)``."""
    output = folder / f"out{len(extra)}.csv"
    command = [sys.executable, "-m", "anyshot", "classify", "--support", str(folder / "support")]
    command += ["--query", str(folder / "query"), "--output", str(output), "--quiet", *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start, list(csv.DictReader(output.open()))


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(parser, data_root=DATA_ROOT, seed=0, output=Path("classify-present.json"))
    parser.add_argument("--draws", type=int, default=2)
    args = parser.parse_args()
    root = (Path(args.data_root) / "mini-imagenet").resolve()  # symlink targets: absolute
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for draw in range(args.draws):
            folder = Path(scratch) / f"draw{draw}"
            truth = make_draw(root, folder, args.seed + draw, ways=10, shots=5, present=2)
            record: dict[str, object] = {"draw": draw, "query_images": len(truth)}
            for name, extra in (("default", []), ("support-init", ["--method", "support-init"])):
                seconds, rows = classify(folder, extra)
                correct = sum(truth.get(Path(r["path"]).name) == r["label"] for r in rows)
                record[name] = {"accuracy": 100 * correct / len(rows), "seconds": seconds}
                print(f"draw {draw} {name:13s} {record[name]}", flush=True)
            results.append(record)
    facts = environment("torch", "torch_threads", "OMP_NUM_THREADS", "machine", "python")
    write_json(Path(args.output), {"draws": results, "environment": facts})


if __name__ == "__main__":
    main()
