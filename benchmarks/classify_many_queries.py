"""``anyshot classify`` on a large query folder: time, peak memory, the progress bar, a repeat.

The folders: ``--classes`` mini-ImageNet **val** classes (sorted wnids) with their first
``--shots`` files as support, and a query folder of ``--queries`` images: the remaining files
of those classes, then files of the other val classes and of the test classes (symbolic links;
the query folder holds images of none of the support classes on purpose: a large unsorted
folder). ``anyshot classify --support S --query Q --output F --cache-dir C`` runs twice under
``/usr/bin/time -v`` with its defaults (224 px, the default threads, progress bars on): first
into an empty cache folder, then again (every image cached). Per run: wall time of the whole
process (interpreter start and ``import torch`` included), peak resident memory, images per
second, and the last progress-bar line of the embedding (its rate and remaining-time
estimate), read from stderr.

    .venv/bin/python benchmarks/classify_many_queries.py \\
        --output benchmarks/results/classify-many-queries.json
"""

from __future__ import annotations

import csv
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from classify_scaling import time_v
from harness.cli import DATA_ROOT, add_shared_arguments, config_of, script_parser
from harness.output import environment, write_json

#: A tqdm line with a rate and a remaining-time estimate, e.g. ``[01:10<02:20, 35.1img/s]``.
PROGRESS = re.compile(r"(\d+)/(\d+) \[([\d:]+)<([\d:?]+), *([\d.]+)img/s\]")


def files_by_split(mini: Path, split: str) -> dict[str, list[Path]]:
    """wnid -> its image files in ``split`` (sorted)."""
    by_class: dict[str, list[Path]] = {}
    with (mini / f"{split}.csv").open() as handle:
        for row in csv.DictReader(handle):
            by_class.setdefault(row["label"], []).append(mini / "images" / row["filename"])
    return {wnid: sorted(files) for wnid, files in sorted(by_class.items())}


def build(mini: Path, root: Path, classes: int, shots: int, queries: int) -> int:
    """``root/support/<wnid>/`` and ``root/query/`` links; returns the query images linked."""
    val = files_by_split(mini, "val")
    chosen = list(val)[:classes]
    pool: list[Path] = []
    for wnid in chosen:
        (root / "support" / wnid).mkdir(parents=True)
        for source in val[wnid][:shots]:
            (root / "support" / wnid / source.name).symlink_to(source.resolve())
        pool += val[wnid][shots:]
    pool += [f for wnid, files in val.items() if wnid not in chosen for f in files]
    pool += [f for files in files_by_split(mini, "test").values() for f in files]
    if len(pool) < queries:
        raise SystemExit(f"only {len(pool)} images available for {queries} queries")
    (root / "query").mkdir()
    for source in pool[:queries]:
        (root / "query" / source.name).symlink_to(source.resolve())
    return queries


def last_progress(stderr: str) -> dict[str, Any] | None:
    """The last progress-bar reading of the query embedding in ``stderr``, or ``None``."""
    readings = PROGRESS.findall(stderr.replace("\r", "\n"))
    if not readings:
        return None
    done, total, elapsed, remaining, rate = readings[-1]
    return {"done": int(done), "total": int(total), "elapsed": elapsed,
            "remaining": remaining, "images_per_second": float(rate)}  # fmt: skip


def classify(root: Path, cache: Path, output: Path) -> dict[str, Any]:
    """One ``/usr/bin/time -v anyshot classify`` run, with its stderr's progress."""
    command = [sys.executable, "-m", "anyshot", "classify", "--support", str(root / "support"),
               "--query", str(root / "query"), "--output", str(output),
               "--cache-dir", str(cache)]  # fmt: skip
    measured, stderr = time_v(command, with_stderr=True)
    own = stderr.split("\tCommand being timed:")[0]  # the command's, not /usr/bin/time's
    lines = [line for line in own.replace("\r", "\n").splitlines() if line.strip()]
    return {**measured, "progress": last_progress(own), "summary": lines[-8:]}


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(parser, data_root=DATA_ROOT, output=Path("classify-many-queries.json"))
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--queries", type=int, default=10_000)
    args = parser.parse_args()
    mini = args.data_root / "mini-imagenet"
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="anyshot-many-queries-") as work:
        root = Path(work)
        images = args.classes * args.shots + build(
            mini, root, args.classes, args.shots, args.queries
        )
        for name in ("first", "repeat"):
            run = classify(root, root / "cache", root / f"{name}.csv")
            run["images_per_second"] = images / run["wall_seconds"]
            with (root / f"{name}.csv").open() as handle:
                run["rows"] = sum(1 for _ in csv.DictReader(handle))
            runs[name] = run
            print(f"{name}: {run['wall_seconds']:.1f} s, {run['images_per_second']:.1f} img/s, "
                  f"peak {run['max_rss_mib']:.0f} MiB, progress {run['progress']}",
                  flush=True)  # fmt: skip
    record = {
        "config": config_of(args),
        "images": images,
        "runs": runs,
        "repeat_ratio": runs["first"]["wall_seconds"] / runs["repeat"]["wall_seconds"],
        "environment": environment("torch", "machine", "python", "cpu_count", "cpu_capability"),
    }
    write_json(args.output, record)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
