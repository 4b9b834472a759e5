"""The practitioner's commands on real images: `anyshot classify` accuracy, `anyshot fit` cost.

Mini-ImageNet **validation** classes only (the test classes are not touched). Every measurement
runs the installed ``anyshot`` command in a subprocess, exactly as a user would, on class folders
built from symbolic links in a temporary folder.

1. Accuracy: ``--draws`` times, 5 val classes drawn at random (seeded), ``shots`` support images
   and 50 query images per class; `anyshot classify` with its defaults (transductive fine-tuning
   of the head, EfficientNet-Lite0 at its default 224 px) versus ``--method support-init`` on the
   same folders.
2. Cost: ``/usr/bin/time -v anyshot fit --image-size 84`` on 5 classes of 1, 10, 100 and 1,000
   images each: wall time and peak resident memory. The val set has 600 images per class, so each
   of the 5 "classes" here is the union of 3 val classes (15 of the 16), which allows 1,000 images
   per class; what is measured is time and memory, not accuracy.

    python benchmarks/classify_scaling.py --output benchmarks/results/classify-scaling.json

EfficientNet-Lite0's ImageNet weights have seen these classes' images (mini-ImageNet is a subset
of ImageNet): the accuracies are optimistic for truly new classes.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

import anyshot.methods.presets as presets
from harness.cli import DATA_ROOT, REQUIRED, add_shared_arguments, config_of, script_parser
from harness.output import environment, write_json

ANYSHOT = [sys.executable, "-m", "anyshot"]
WAYS = 5


def val_classes(root: Path) -> dict[str, list[Path]]:
    """wnid -> its val image files (sorted)."""
    by_class: dict[str, list[Path]] = defaultdict(list)
    with (root / "val.csv").open() as handle:
        for row in csv.DictReader(handle):
            by_class[row["label"]].append(root / "images" / row["filename"])
    return {wnid: sorted(files) for wnid, files in sorted(by_class.items())}


def link_folder(target: Path, files_by_class: dict[str, list[Path]]) -> None:
    """``target/<class>/<file>`` symbolic links."""
    for name, files in files_by_class.items():
        (target / name).mkdir(parents=True, exist_ok=True)
        for source in files:
            (target / name / source.name).symlink_to(source)


def run(command: list[str]) -> tuple[float, str]:
    """Run a command; return (wall seconds, stderr). Raise with its output if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stderr


def accuracy(predictions: Path) -> float:
    """Fraction of rows whose label is the query image's class folder name."""
    with predictions.open() as handle:
        rows = list(csv.DictReader(handle))
    return float(np.mean([row["label"] == Path(row["path"]).parent.name for row in rows]))


def measure_accuracy(
    classes: dict[str, list[Path]], work: Path, shots: int, queries: int, draws: int, seed: int
) -> list[dict[str, Any]]:
    """Default `classify` vs `--method support-init` on the same seeded folders."""
    records = []
    for draw in range(draws):
        rng = np.random.Generator(np.random.PCG64([seed, shots, draw]))
        chosen = sorted(rng.choice(sorted(classes), size=WAYS, replace=False).tolist())
        support: dict[str, list[Path]] = {}
        query: dict[str, list[Path]] = {}
        for wnid in chosen:
            picked = rng.choice(len(classes[wnid]), size=shots + queries, replace=False)
            files = [classes[wnid][i] for i in picked]
            support[wnid], query[wnid] = files[:shots], files[shots:]
        folder = work / f"accuracy-{shots}shot-{draw}"
        link_folder(folder / "support", support)
        link_folder(folder / "query", query)
        for name, extra in (("default", []), ("support-init", ["--method", "support-init"])):
            output = folder / f"{name}.csv"
            command = [*ANYSHOT, "classify", "--support", str(folder / "support"),
                       "--query", str(folder / "query"), "--output", str(output), "--quiet",
                       *extra]  # fmt: skip
            seconds, _ = run(command)
            record: dict[str, Any] = {
                "shots": shots,
                "draw": draw,
                "classes": chosen,
                "method": name,
                "accuracy": accuracy(output),
                "queries": WAYS * queries,
                "seconds": seconds,
                "command": " ".join(["anyshot", *command[3:]]),
            }
            records.append(record)
            print(
                f"{shots}-shot draw {draw} {name:<13} accuracy {100 * record['accuracy']:.2f}% "
                f"({seconds:.1f} s)",
                flush=True,
            )
        shutil.rmtree(folder)
    return records


def time_v(command: list[str], *, with_stderr: bool = False) -> Any:
    """Wall seconds and peak RSS (MiB) of ``command`` under ``/usr/bin/time -v``; with
    ``with_stderr``, ``(those, the command's stderr)``."""
    _, stderr = run(["/usr/bin/time", "-v", *command])
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", stderr)
    if rss is None or wall is None:
        raise RuntimeError(f"unexpected /usr/bin/time output:\n{stderr}")
    parts = [float(p) for p in wall.group(1).split(":")]
    elapsed = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    measured = {"max_rss_mib": int(rss.group(1)) / 1024, "wall_seconds": elapsed}
    return (measured, stderr) if with_stderr else measured


def measure_scaling(
    classes: dict[str, list[Path]],
    work: Path,
    sizes: list[int],
    image_size: int,
    threads: list[int],
) -> list[dict[str, Any]]:
    """`anyshot fit` on 5 merged classes of ``n`` images each, for each ``n`` and thread count.

    A thread count of 0 means torch's default (all cores); the load average before each run is
    recorded, since other processes on a shared machine slow multi-threaded torch down a lot.
    """
    wnids = sorted(classes)[: 3 * WAYS]
    groups = {
        f"group{g}": [f for wnid in wnids[3 * g : 3 * g + 3] for f in classes[wnid]]
        for g in range(WAYS)
    }
    records = []
    for n in sizes:
        folder = work / f"scaling-{n}"
        link_folder(folder / "support", {name: files[:n] for name, files in groups.items()})
        model = folder / "model.pt"
        for count in threads:
            extra = ["--threads", str(count)] if count else []
            command = [*ANYSHOT, "fit", "--support", str(folder / "support"), "--output",
                       str(model), "--image-size", str(image_size), "--quiet", *extra]  # fmt: skip
            load = os.getloadavg()[0]
            measured = time_v(command)
            record = {
                "images_per_class": n,
                "images": WAYS * n,
                "image_size": image_size,
                "threads": count or torch.get_num_threads(),
                "load_average_before": load,
                **measured,
                "model_file_mib": model.stat().st_size / 2**20,
                "command": "/usr/bin/time -v " + " ".join(["anyshot", *command[3:]]),
            }
            records.append(record)
            print(
                f"fit {n:>5} images/class, {record['threads']} threads: "
                f"{measured['wall_seconds']:.1f} s, peak RSS {measured['max_rss_mib']:.0f} MiB "
                f"(load before {load:.2f})",
                flush=True,
            )
        shutil.rmtree(folder)
    return records


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT / "mini-imagenet",
        image_size=84,
        seed=0,
        output=REQUIRED,
        helps={"image_size": "for the fit measurements"},
    )
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--queries", type=int, default=50, help="query images per class")
    parser.add_argument("--draws", type=int, default=5, help="random class/image draws per shot")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument(
        "--fit-threads", type=int, nargs="+", default=[0, 1], help="0 = torch's default"
    )
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    args.data_root = args.data_root.resolve()  # the symbolic links need an absolute target
    if not (args.data_root / "val.csv").is_file():
        raise SystemExit(f"mini-ImageNet not found at {args.data_root}")

    classes = val_classes(args.data_root)
    results: dict[str, Any] = {
        "config": config_of(args),
        "environment": environment("python", "torch", "cpu_count", "machine"),
        "split": "val",
        "recommended_head_settings": dataclasses.asdict(presets.RECOMMENDED),
    }
    with tempfile.TemporaryDirectory(prefix="anyshot-scaling-") as temp:
        work = Path(temp)
        if not args.skip_accuracy:
            records = []
            for shots in args.shots:
                records += measure_accuracy(
                    classes, work, shots, args.queries, args.draws, args.seed
                )
            results["accuracy"] = records
            summary = []
            for shots in args.shots:
                for name in ("default", "support-init"):
                    values = [
                        r["accuracy"]
                        for r in records
                        if r["shots"] == shots and r["method"] == name
                    ]
                    summary.append(
                        {
                            "shots": shots,
                            "method": name,
                            "draws": len(values),
                            "accuracy_mean": float(np.mean(values)),
                            "accuracy_std": float(np.std(values, ddof=1))
                            if len(values) > 1
                            else 0.0,
                        }
                    )
                    print(
                        f"{shots}-shot {name:<13} mean {100 * summary[-1]['accuracy_mean']:.2f}% "
                        f"std {100 * summary[-1]['accuracy_std']:.2f} over {len(values)} draws"
                    )
            results["accuracy_summary"] = summary
        if not args.skip_scaling:
            results["scaling"] = measure_scaling(
                classes, work, args.sizes, args.image_size, args.fit_threads
            )
    # The commands read the settings afresh in each subprocess: check they did not change.
    now = dataclasses.asdict(importlib.reload(presets).RECOMMENDED)
    if now != results["recommended_head_settings"]:
        raise SystemExit(f"the RECOMMENDED preset changed during the run: {now}; run again")
    write_json(args.output, results)
    print(f"results written to {args.output}")


if __name__ == "__main__":
    main()
