"""``anyshot classify`` on a folder: today's embedding path against the fast path, side by side.

The folder: ``--classes`` mini-ImageNet **val** classes (sorted wnids), the first ``--shots``
files of each as support and the next ``--queries`` as query images (symbolic links in a
temporary folder). Every run is a fresh subprocess (``--mode``, internal) so that its peak
resident memory (``ru_maxrss``: Python, torch, the model, the images and the work) is its own;
the time is the wall time of the classification in that process (importing anyshot's command
modules, from bytecode compiled beforehand as ``pip install`` does; scanning the folders,
loading the backbone, embedding, fitting; not the interpreter's start nor ``import torch``),
and images/s is support plus query images over it. The embedding
part alone is timed too (the wall time inside ``FeatureCache.embed``, through which the
estimator embeds everything, and the images it computed rather than read).

* ``old``: the path before the fast path: the estimator embedding through the old call,
  :func:`anyshot.embedding.embed_images` with its defaults (float32, contiguous input, no
  cache) and ``batch_size=64`` (the estimator's ``_embed`` of before, patched in here), every
  file decoded fully in the calling thread, glibc's heap thresholds, the package's padding
  convolutions, at 224 px, torch's default threads (one per core, ``OMP_NUM_THREADS`` unset),
  driven as ``classify`` drives it (scan the folders, ``classify(...)``).
* ``new``: ``anyshot classify --support S --query Q --output F --quiet --cache-dir C`` through
  ``anyshot.cli.main``, default settings (bfloat16 where the CPU has it, channels-last, the
  automatic input size, the default threads), into an empty cache folder ``C``;
  ``new-warm``: the same command again (every image's features are in ``C``).
* ``new-224``: as ``new`` with ``--image-size 224 --no-cache`` (the old size, no cache): the
  speed-up of the embedding path alone.

``--photos``: the same images as JPEGs the size of a 12-megapixel camera photo
(:func:`photo_sized`: 4032 x 3024, noise added so that they compress like photos), where
decoding, not the network, costs most: the new path decodes a large JPEG at a reduced scale
(:func:`anyshot.data.decode_image`) on the threads it was given.

Each variant runs ``--repeats`` times (``new`` / ``new-warm`` as pairs, each pair with a fresh
cache folder); the table shows the best and all times. All of it runs under each of
``--conditions``: ``idle`` (the machine as it is; each run records the 1-minute load average
at its start; before each run the script waits, up to 3 minutes, for the load average to fall
below ``--cool-down``, or the previous run's own load would count as other work and lower the
default threads) and ``busy`` (``--busy`` extra processes spinning on the CPU, started
``--settle`` seconds before the first run so that the load average, which sets the default
threads, has seen them: a shared machine with other work). The ``idle`` condition is whatever
else runs on the machine: read each run's ``load_average_at_start``.

    .venv/bin/python benchmarks/practitioner_speed.py \\
        --output benchmarks/results/practitioner-speed.json
    .venv/bin/python benchmarks/practitioner_speed.py --conditions idle --repeats 1 \\
        --queries 200 --output benchmarks/results/practitioner-speed-1000-queries.json
    .venv/bin/python benchmarks/practitioner_speed.py --photos \\
        --output benchmarks/results/practitioner-speed-photos.json
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from harness.cli import DATA_ROOT, add_shared_arguments, config_of, script_parser
from harness.output import environment, write_json

VARIANTS = ("old", "new", "new-warm", "new-224")


def build_folder(
    data_root: Path, target: Path, classes: int, shots: int, queries: int, photos: bool = False
) -> int:
    """``target/support/<wnid>/`` and ``target/query/<wnid>/`` (links, or with ``photos`` the
    :func:`photo_sized` copies); returns the image count."""
    mini = data_root / "mini-imagenet" if (data_root / "mini-imagenet").is_dir() else data_root
    by_class: dict[str, list[str]] = {}
    with (mini / "val.csv").open() as handle:
        for row in csv.DictReader(handle):
            by_class.setdefault(row["label"], []).append(row["filename"])
    jobs: list[tuple[Path, Path, int]] = []
    for wnid in sorted(by_class)[:classes]:
        files = sorted(by_class[wnid])[: shots + queries]
        for i, name in enumerate(files):
            link = target / ("support" if i < shots else "query") / wnid / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not photos:
                link.symlink_to((mini / "images" / name).resolve())
            jobs.append((mini / "images" / name, link, len(jobs)))
    if photos:  # in fresh processes: a child inherits its parent's peak memory (ru_maxrss)
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(os.cpu_count(), mp_context=spawn) as pool:
            list(pool.map(photo_sized, *zip(*jobs, strict=True)))
    return len(jobs)


#: The side lengths of a 12-megapixel camera photo.
PHOTO = (4032, 3024)


def photo_sized(source: Path, target: Path, seed: int) -> None:
    """``source`` (an 84 px mini-ImageNet image) as a JPEG the size of a 12-megapixel camera
    photo: bicubic upscale to :data:`PHOTO`, plus Gaussian noise of standard deviation 6 grey
    levels (seeded) so that it compresses like a photo (about 2.6 MB at quality 90) rather than
    like a smooth upscale; decoding cost follows the pixels and the compressed bytes."""
    import numpy as np
    from PIL import Image

    with Image.open(source) as image:
        large = np.asarray(image.convert("RGB").resize(PHOTO, Image.Resampling.BICUBIC))
    noise = np.random.default_rng(seed).standard_normal(large.shape, dtype=np.float32) * 6.0
    pixels = (large.astype(np.float32) + noise).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(target, "JPEG", quality=90)


def _classify_old(folder: Path) -> dict[str, Any]:
    """Today's path, as ``classify`` drives the estimator."""
    from anyshot.classifier import FewShotClassifier
    from anyshot.data.intake import scan_images, scan_support

    support = scan_support(folder / "support")
    query = scan_images([folder / "query"])
    model = FewShotClassifier(cache_dir=False)  # embedding: see _use_old_embedding
    probabilities, _ = model.classify(support.paths, support.labels, query.paths)
    return {"image_size": model.preprocessing_.image_size, "rows": len(probabilities)}


def _classify_new(folder: Path, cache: Path, extra: list[str]) -> dict[str, Any]:
    """``anyshot classify`` at its defaults (plus ``extra``)."""
    from anyshot.cli import main

    output = cache.parent / f"predictions-{time.time_ns()}.json"
    where = ["--no-cache"] if "--no-cache" in extra else ["--cache-dir", str(cache)]
    argv = ["classify", "--support", str(folder / "support"), "--query", str(folder / "query"),
            "--output", str(output), "--quiet", *where, *extra]  # fmt: skip
    if main(argv) != 0:
        raise SystemExit("classify failed")
    summary = json.loads(output.read_text())["summary"]
    return {"image_size": summary["image_size"], "rows": len(json.loads(output.read_text())
                                                                ["predictions"])}  # fmt: skip


def _use_old_embedding() -> None:
    """The estimator's embedding as it was before the fast path (float32, contiguous, no
    cache, batches of ``batch_size``, every file decoded fully in the calling thread): the old
    call, :func:`embed_images` with its defaults and one decoding thread, glibc's own heap
    thresholds (not :func:`anyshot.heap.reused_heap`) and the package's convolutions, which
    copy every padded input (not
    :class:`~anyshot.backbones.efficientnet_lite.SamePaddingConv2d`)."""
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    from anyshot import embedding
    from anyshot.backbones.efficientnet_lite import SamePaddingConv2d
    from anyshot.classifier import FewShotClassifier
    from anyshot.data.images import open_image

    def old_embed(self: Any, network: Any, images: Any, on_unreadable: Any, desc: str) -> Any:
        return embedding.embed_images(network.network(), images, batch_size=self.batch_size,
                                      on_unreadable=on_unreadable, decode_threads=1,
                                      show_progress=self.show_progress, desc=desc)  # fmt: skip

    def full_decode(path: Any, preprocessing: Any) -> Any:
        return preprocessing(open_image(path))

    FewShotClassifier._embed = old_embed  # type: ignore[method-assign]
    embedding.load_file = full_decode
    embedding.reused_heap = contextlib.nullcontext  # type: ignore[assignment]  # glibc default
    SamePaddingConv2d.forward = Conv2dDynamicSamePadding.forward  # type: ignore[method-assign]


def _time_embedding(old: bool) -> dict[str, float]:
    """Wrap the estimator's embedding step (``FewShotClassifier._embed``, through which it
    embeds everything) to add up its wall time and the images it computed (not read from a
    cache) into the returned dict; ``old``: the old call, which computes every image."""
    from anyshot.classifier import FewShotClassifier
    from anyshot.feature_cache import FeatureCache

    totals = {"embed_seconds": 0.0, "embedded_images": 0.0}
    original, cached = FewShotClassifier._embed, FeatureCache.embed
    seen = {"cached": 0}

    def counted(self: FeatureCache, *args: Any, **kwargs: Any) -> Any:
        seen["cached"] += 1
        before = self.computed
        try:
            return cached(self, *args, **kwargs)
        finally:
            totals["embedded_images"] += self.computed - before

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start, calls = time.perf_counter(), seen["cached"]
        try:
            result = original(self, *args, **kwargs)
        finally:
            totals["embed_seconds"] += time.perf_counter() - start
        if old and seen["cached"] == calls:  # the old call: every image computed
            totals["embedded_images"] += len(result[1])
        return result

    FeatureCache.embed = counted  # type: ignore[method-assign]
    FewShotClassifier._embed = timed  # type: ignore[method-assign]
    return totals


def child(args: argparse.Namespace) -> None:
    """One timed classification; prints a JSON line."""
    import torch

    if args.mode == "old":
        _use_old_embedding()
    embedding = _time_embedding(old=args.mode == "old")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    if args.mode == "old":
        facts = _classify_old(args.folder)
    elif args.mode == "new-224":
        facts = _classify_new(args.folder, args.cache, ["--no-cache", "--image-size", "224"])
    else:
        facts = _classify_new(args.folder, args.cache, [])
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = {**facts, **embedding, "seconds": seconds, "peak_rss_mb": rss,
              "threads": torch.get_num_threads(), "load_average_at_start": load}  # fmt: skip
    print(json.dumps(record), flush=True)


def run_child(mode: str, folder: Path, cache: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    command = [sys.executable, __file__, "--mode", mode, "--folder", str(folder),
               "--cache", str(cache)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    record: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return record


def compile_bytecode() -> bool:
    """Compile anyshot's modules to bytecode, as ``pip install`` does: a user's runs read it,
    so no timed run should compile ~100 modules (about 0.1-0.3 s, more for the new path, which
    imports more of them), even where ``PYTHONDONTWRITEBYTECODE`` is set. Returns success."""
    import compileall

    import anyshot

    return bool(compileall.compile_dir(Path(anyshot.__file__).parent, quiet=1))


def cool_down(limit: float, longest: float = 180.0) -> float:
    """Wait until the 1-minute load average is below ``limit`` (at most ``longest`` seconds):
    the previous run's own load would otherwise count as other work. Returns the wait."""
    start = time.perf_counter()
    while os.getloadavg()[0] >= limit and time.perf_counter() - start < longest:
        time.sleep(5)
    return time.perf_counter() - start


def measure(args: argparse.Namespace, folder: Path, images: int, idle: bool) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="anyshot-speed-cache-") as cache_root:
            cache = Path(cache_root) / "features"
            for mode in VARIANTS:
                waited = cool_down(args.cool_down) if idle and args.cool_down else 0.0
                record = run_child(mode, folder, cache)
                record["cool_down_seconds"] = waited
                record["images_per_second"] = images / record["seconds"]
                computed = record["embedded_images"]
                record["embedding_images_per_second"] = (
                    computed / record["embed_seconds"] if computed else None
                )
                runs[mode].append(record)
                rate = record["embedding_images_per_second"] or 0.0
                print(f"repeat {repeat} {mode:9s} {record['seconds']:7.2f} s "
                      f"{record['images_per_second']:6.2f} img/s; embedding "
                      f"{record['embed_seconds']:6.2f} s, {computed:4.0f} computed, "
                      f"{rate:6.2f} img/s; "
                      f"{record['peak_rss_mb']:6.0f} MB  {record['image_size']} px "
                      f"{record['threads']} threads", flush=True)  # fmt: skip
    best = {mode: min(r["seconds"] for r in records) for mode, records in runs.items()}
    embed = {mode: min(r["embed_seconds"] for r in records) for mode, records in runs.items()}
    return {
        "runs": runs,
        "best_seconds": best,
        "images_per_second": {mode: images / s for mode, s in best.items()},
        "best_embed_seconds": embed,
        "embedding_images_per_second": {m: images / embed[m] for m in ("old", "new", "new-224")},
        "embedding_speedup_new_vs_old": embed["old"] / embed["new"],
        "embedding_repeat_ratio": embed["new"] / embed["new-warm"],
        "peak_rss_mb": {m: max(r["peak_rss_mb"] for r in rs) for m, rs in runs.items()},
        "speedup_new_vs_old": best["old"] / best["new"],
        "speedup_new_224_vs_old": best["old"] / best["new-224"],
        "repeat_run_ratio": best["new"] / best["new-warm"],
    }


def spin() -> None:
    """Keep one core busy until killed (the ``busy`` condition's load)."""
    while True:
        pass


def measure_condition(
    args: argparse.Namespace, folder: Path, images: int, condition: str
) -> dict[str, Any]:
    """:func:`measure` on an idle machine, or with ``--busy`` spinning processes."""
    if condition == "idle":
        return measure(args, folder, images, idle=True)
    spinners = [subprocess.Popen([sys.executable, __file__, "--mode", "spin"])
                for _ in range(args.busy)]  # fmt: skip
    try:
        time.sleep(args.settle)
        return {"busy_processes": args.busy, **measure(args, folder, images, idle=False)}
    finally:
        for process in spinners:
            process.kill()
            process.wait()


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(parser, data_root=DATA_ROOT, output=Path("practitioner-speed.json"))
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20, help="query images per class")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--conditions", nargs="+", choices=["idle", "busy"],
                        default=["idle", "busy"])  # fmt: skip
    parser.add_argument("--busy", type=int, default=2, help="spinning processes (busy)")
    parser.add_argument("--settle", type=float, default=60.0, help="seconds before timing (busy)")
    parser.add_argument("--cool-down", type=float, default=0.3,
                        help="idle: before each run, wait (up to 3 min) for the 1-minute load "
                             "average to fall below this (0: do not wait)")  # fmt: skip
    parser.add_argument("--photos", action="store_true",
                        help="the same images as JPEGs the size of camera photos (4032 x 3024, "
                             "noise added: photo_sized) instead of the 84 px files")  # fmt: skip
    parser.add_argument("--mode", choices=[*VARIANTS, "spin"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "spin":
        spin()
    if args.mode is not None:
        child(args)
        return
    conditions: dict[str, Any] = {}
    compiled = compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="anyshot-speed-folder-") as root:
        folder = Path(root)
        images = build_folder(
            args.data_root, folder, args.classes, args.shots, args.queries, args.photos
        )
        for condition in args.conditions:
            print(f"--- {condition}", flush=True)
            conditions[condition] = measure_condition(args, folder, images, condition)
            summary = {k: v for k, v in conditions[condition].items() if k != "runs"}
            print(json.dumps(summary, indent=2), flush=True)
    record = {
        "config": config_of(args, leave_out=("mode", "folder", "cache")),
        "images": images,
        "bytecode_compiled": compiled,
        "conditions": conditions,
        "environment": environment("torch", "machine", "python", "cpu_count", "cpu_capability"),
    }
    write_json(args.output, record)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
