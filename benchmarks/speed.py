"""Speed, side by side on one machine: embedding, fine-tuning scopes, batching, easyfsl.

Every part runs in a fresh subprocess (``--mode``, internal), so each row's peak resident
memory (``ru_maxrss`` of that process: Python, torch, the model, the decoded images and the
work) is its own. All episodes are seeded EpisodeSampler streams of mini-ImageNet val
(``--seed``), so every table compares identical episodes.

(a) **embed**: EfficientNet-Lite0 images/s at each ``--embed-sizes`` on the same
    ``--embed-images`` pre-decoded images (decoding is not timed): ``naive`` (plain PyTorch:
    ``model.eval()``, ``torch.no_grad()``, contiguous NCHW float32, batch 64) versus anyshot's
    embedding path (``FeatureCache.features`` on an in-memory dataset of the decoded tensors:
    ``inference_mode``, channels-last input, the model digest, key hashing and the shard write
    included; a fresh folder per pass, so always the compute path) with its options
    ``dtype="float32"`` (default) / ``"bfloat16"`` and ``freeze=False`` (default) / ``True``
    (a ``torch.jit`` trace, frozen: batch-norm folded; the trace is redone, and timed, in every
    pass); plus ``plain-cl-fp32`` (plain PyTorch with channels-last weights *and* input, not
    anyshot API; opt-in: ``plain-compile-fp32`` / ``-bf16``, ``torch.compile``, whose compile
    time is reported as ``setup_seconds``, not timed). FLOPs per image are counted with
    ``torch.utils.flop_counter.FlopCounterMode``; achieved GFLOP/s is compared with the measured
    peak of a ``--peak-size`` square ``torch.matmul`` (float32 and bfloat16). Every variant's
    features are compared with the naive ones (max |difference|, min cosine).
    **accuracy**: support-init and anyshot's recommended head on ``--accuracy-episodes`` 84 px
    episodes from float32 ``FeatureCache`` features versus each other variant (``freeze``,
    ``bfloat16``, both): the same episodes, so the paired per-episode difference with its 95%
    CI says whether the change is within noise.
(b) **scopes**: seconds per episode and accuracy of transductive fine-tuning, scope ``all`` and
    ``last`` with the paper's settings (the method defaults: T = 1, Adam 5e-5, 25 epochs,
    lambda 1) on the first ``--slow-episodes`` episodes, and scope ``head`` with
    :data:`~anyshot.methods.presets.RECOMMENDED` on the same episodes from images (its time
    includes embedding the 80 or 100 images) and on all ``--episodes`` from cached features.
(c) **batched**: episodes/s of support-init and the recommended head on cached 84 px features,
    both through the method's ``fit_features``: one episode per call (a batch of one) versus
    all ``--episodes`` episodes in one call; the same episodes. (Results written before
    ``fit_features`` timed "one at a time" as the method's ``__call__`` with ``nn.Flatten()`` as
    the backbone, and "batched" as ``anyshot.methods.batched``.)
(d) **easyfsl**: easyfsl 1.5.0 ``TransductiveFinetuning``, ``TIM`` and ``PrototypicalNetworks``
    (their default hyper-parameters, ``nn.Identity()`` backbone) on the identical cached
    features, run by ``benchmarks/easyfsl_methods.py`` in its own venv
    (``--easyfsl-python``; see that file for its setup), one subprocess per method.

Timing: ``time.perf_counter``; one untimed warm-up before timed loops, except the slow scopes
(every one of their episodes is timed; see the median). Threads: ``torch.set_num_threads
(--threads)`` in every subprocess. Features for (a)-accuracy, (b)-head, (c) and (d) are read from
(or added to) the ``--cache-dir`` FeatureCache (84 px; float32 by default, the other variants
for the accuracy part only).

    .venv/bin/python benchmarks/speed.py --threads 2 --embed-images 256 --episodes 500 \\
        --slow-episodes 10 --accuracy-episodes 200 --output benchmarks/results/speed.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from anyshot.backbones import build_backbone
from anyshot.backbones.base import Backbone
from anyshot.data.dataset import ImageDataset
from anyshot.data.images import Preprocessing
from anyshot.episodes import EpisodeSampler, EpisodeSpec, make_episode
from anyshot.evaluation import summarize
from anyshot.feature_cache import FeatureCache
from anyshot.methods import SupportBasedInit, TransductiveFineTuning
from anyshot.methods.presets import RECOMMENDED, Method
from anyshot.progress import progress_bar
from harness.cli import (
    DATA_ROOT,
    FEATURE_CACHE,
    OPTIONAL,
    add_shared_arguments,
    config_of,
    script_parser,
)
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes, run_method, timing
from harness.output import environment, peak_rss_mb, write_json

HERE = Path(__file__).resolve().parent
BACKBONE = "efficientnet-lite0"
PARTS = ("embed", "accuracy", "scopes", "batched", "easyfsl")
EMBED_VARIANTS = (
    "naive",
    "anyshot-fp32",
    "anyshot-fp32-freeze",
    "anyshot-bf16",
    "anyshot-bf16-freeze",
    "plain-cl-fp32",
)
#: FeatureCache options of the feature variants compared for accuracy (float32 = the default).
FEATURE_VARIANTS: dict[str, dict[str, Any]] = {
    "float32": {},
    "float32+freeze": {"freeze": True},
    "bfloat16": {"dtype": "bfloat16"},
    "bfloat16+freeze": {"dtype": "bfloat16", "freeze": True},
}
EPISODE_SIZE = 84  # image size of every episode part


# ----------------------------------------------------------------------------- helpers
def rss_now_mb() -> float:
    """Current resident set size of this process (MiB), from /proc (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class DecodedImages(ImageDataset):
    """Pre-decoded float ``[N, C, H, W]`` model inputs as a dataset, so that FeatureCache times
    only the network (unlike :class:`anyshot.data.memory.MemoryImages`, uint8 pixels that are
    not an :class:`~anyshot.data.dataset.ImageDataset`)."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__(["all"], np.zeros(len(images), dtype=np.int64))
        self._images = images

    def source(self, index: int) -> str:
        return f"memory:{index}"  # no file behind it: keyed by this string alone

    def image(self, index: int) -> Any:
        raise NotImplementedError("DecodedImages holds decoded tensors only")

    def load_batch(self, indices: Iterable[int], preprocessing: Preprocessing) -> torch.Tensor:
        return self._images[torch.as_tensor(list(indices), dtype=torch.long)]


def samplers(args: argparse.Namespace, dataset: ImageDataset) -> dict[int, EpisodeSampler]:
    """One seeded sampler per shot count: episode ``i`` of a shot is the same in every mode."""
    return {
        shots: EpisodeSampler(
            dataset.labels, ways=args.ways, shots=shots, queries=args.queries, seed=args.seed
        )
        for shots in args.shots
    }


def episode_inputs(args: argparse.Namespace) -> tuple[Backbone, ImageDataset]:
    """The backbone at the episodes' image size, and the dataset split they are drawn from."""
    backbone = build_backbone(BACKBONE, image_size=EPISODE_SIZE)
    return backbone, dataset_split(args.data_root, "mini-imagenet", args.split)


def cached_episodes(
    cache: FeatureCache, backbone: nn.Module, dataset: ImageDataset, specs: Sequence[EpisodeSpec]
) -> EpisodeBatch:
    """The episodes ``specs`` as stacked rows of ``cache`` (embedded there first if missing)."""
    return EpisodeBatch.of(embed_episodes(cache, backbone, dataset, specs).features, specs)


def shot_episodes(args: argparse.Namespace, shots: int) -> EpisodeBatch:
    """The ``--episodes`` episodes of one shot count, from the float32 FeatureCache."""
    backbone, dataset = episode_inputs(args)
    specs = list(samplers(args, dataset)[shots].take(args.episodes))
    return cached_episodes(FeatureCache(args.cache_dir), backbone, dataset, specs)


def head_method(name: str, seed: int) -> Method:
    """``support-init`` or ``recommended-head`` (the recommended preset with ``seed``)."""
    if name == "support-init":
        return SupportBasedInit()
    return dataclasses.replace(RECOMMENDED, seed=seed)


def settings_of(method: Any) -> dict[str, Any]:
    return {"class": type(method).__name__, **dataclasses.asdict(method)}


# ----------------------------------------------------------------------------- modes (children)
def mode_peak(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Best GFLOP/s of an ``n x n`` matmul, float32 and bfloat16, over ~1 s each; and the
    network's FLOPs per image at every ``--embed-sizes`` (counted here, not in the timed modes,
    so that their peak memory is their own)."""
    n = args.peak_size
    result: dict[str, Any] = {
        "matrix_size": n,
        "flops_per_image": {
            str(size): flops_per_image(build_backbone(BACKBONE, image_size=size).eval(), size)
            for size in args.embed_sizes
        },
    }
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        g = torch.Generator().manual_seed(args.seed)
        a = torch.randn(n, n, generator=g).to(dtype)
        b = torch.randn(n, n, generator=g).to(dtype)
        torch.matmul(a, b)
        best, spent, calls = 0.0, 0.0, 0
        while spent < 1.0 or calls < 3:
            start = time.perf_counter()
            torch.matmul(a, b)
            elapsed = time.perf_counter() - start
            best = max(best, 2 * n**3 / elapsed / 1e9)
            spent += elapsed
            calls += 1
        result[f"{name}_gflops"] = best
    return result


def flops_per_image(model: nn.Module, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(2, 3, size, size))
    return float(counter.get_total_flops()) / 2


def mode_embed(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Images/s of one embedding variant on ``--embed-images`` pre-decoded images."""
    size, variant = int(spec["size"]), str(spec["variant"])
    name, _, batch_text = variant.partition("@")
    batch = int(batch_text) if batch_text else args.batch_size
    backbone = build_backbone(BACKBONE, image_size=size).eval()
    dataset = dataset_split(args.data_root, "mini-imagenet", args.split)
    rng = np.random.default_rng(args.seed)
    items = rng.choice(len(dataset), size=min(args.embed_images, len(dataset)), replace=False)
    images = dataset.load_batch(items.tolist(), backbone.preprocessing)  # decoded, not timed
    n = len(images)
    result: dict[str, Any] = {"size": size, "variant": variant, "batch_size": batch, "images": n}
    setup_start = time.perf_counter()

    run: Callable[[torch.Tensor], torch.Tensor]
    if name == "naive":

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([backbone(b.contiguous()) for b in x.split(batch)])

    elif name in ("anyshot-fp32", "anyshot-bf16", "anyshot-fp32-freeze", "anyshot-bf16-freeze"):
        options: dict[str, Any] = {"dtype": "bfloat16" if "bf16" in name else "float32"}
        options["freeze"] = name.endswith("-freeze")
        result["feature_cache_options"] = options
        scratch = Path(tempfile.mkdtemp(prefix="speed-embed-", dir=args.work_dir))
        runs = [0]

        def run(x: torch.Tensor) -> torch.Tensor:
            runs[0] += 1  # a fresh folder each run: always a miss, i.e. the compute path
            folder = scratch / str(runs[0])
            cache = FeatureCache(folder, shard_size=max(len(x), 1), **options)
            return cache.features(backbone, DecodedImages(x), range(len(x)), batch_size=batch)

    elif name == "plain-cl-fp32":
        model = copy.deepcopy(backbone).to(memory_format=torch.channels_last)  # type: ignore[call-overload]

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return torch.cat(
                    [model(b.contiguous(memory_format=torch.channels_last)) for b in x.split(batch)]
                )

    elif name in ("plain-compile-fp32", "plain-compile-bf16"):
        dtype = torch.bfloat16 if name.endswith("bf16") else torch.float32
        model = copy.deepcopy(backbone).to(dtype)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        compiled = torch.compile(model)
        with torch.no_grad():  # compile now (both batch sizes), so setup_seconds holds it
            for size_of_batch in {min(batch, n), n % batch or min(batch, n)}:
                example = images[:size_of_batch].to(dtype)
                compiled(example.contiguous(memory_format=torch.channels_last))

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat(
                    [
                        compiled(b.to(dtype).contiguous(memory_format=torch.channels_last)).float()
                        for b in x.split(batch)
                    ]
                )

    else:
        known = (*EMBED_VARIANTS, "plain-compile-fp32", "plain-compile-bf16")
        raise SystemExit(f"unknown embedding variant {variant!r}; known: {known}")
    result["setup_seconds"] = time.perf_counter() - setup_start

    run(images[:batch])  # warm-up (a freeze variant traces again in every timed run)
    result["rss_before_timing_mb"] = rss_now_mb()
    times, small_times = [], []
    features = torch.empty(0)
    small = min(batch, n)
    for _ in range(args.embed_repeats):
        start = time.perf_counter()
        features = run(images)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        run(images[:small])
        small_times.append(time.perf_counter() - start)
    result["seconds"] = times
    result["images_per_s"] = n / min(times)
    # Per call: fixed cost (trace, digest, shard write) + per image. Two call sizes separate them.
    result["seconds_for_one_batch"] = small_times
    extra = min(times) - min(small_times)
    if n > small and extra > 0:
        marginal = (n - small) / extra
        result["marginal_images_per_s"] = marginal
        result["per_call_overhead_seconds"] = max(min(small_times) - small / marginal, 0.0)
    torch.save(features.float(), Path(spec["features_file"]))
    return result


def mode_cache(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Make sure every item of the episodes is in the FeatureCache (84 px), one variant."""
    backbone, dataset = episode_inputs(args)
    count = int(spec["episodes"])
    specs = [s for sampler in samplers(args, dataset).values() for s in sampler.take(count)]
    cache = FeatureCache(args.cache_dir, **FEATURE_VARIANTS[spec["variant"]])
    embedded = embed_episodes(cache, backbone, dataset, specs, batch_size=args.batch_size)
    computed, seconds = embedded.computed, embedded.seconds
    return {
        "variant": spec["variant"],
        "feature_cache_options": FEATURE_VARIANTS[spec["variant"]],
        "items": len(embedded.features.items),
        "computed": computed,
        "seconds_with_decoding": seconds,
        "images_per_s_with_decoding": computed / seconds if computed else None,
    }


def mode_dtype_accuracy(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Support-init and recommended-head accuracy from each feature variant vs float32."""
    backbone, dataset = episode_inputs(args)
    result: dict[str, Any] = {}
    methods = {name: head_method(name, args.seed) for name in ("support-init", "recommended-head")}
    for shots, sampler in samplers(args, dataset).items():
        specs = list(sampler.take(args.accuracy_episodes))
        per_variant: dict[str, dict[str, list[float]]] = {}
        for variant, options in FEATURE_VARIANTS.items():
            cache = FeatureCache(args.cache_dir, **options)
            batch = cached_episodes(cache, backbone, dataset, specs)
            per_variant[variant] = {
                name: run_method(method, batch).accuracies for name, method in methods.items()
            }
        for method in ("support-init", "recommended-head"):
            fp32 = per_variant["float32"][method]
            for variant in FEATURE_VARIANTS:
                if variant == "float32":
                    continue
                other = per_variant[variant][method]
                difference = np.asarray(other) - np.asarray(fp32)
                std = float(difference.std(ddof=1)) if len(difference) > 1 else 0.0
                result[f"{shots}-shot {method} {variant}"] = {
                    "shots": shots,
                    "method": method,
                    "variant": variant,
                    "float32": summarize(fp32),
                    "other": summarize(other),
                    "paired_difference_mean": float(difference.mean()),
                    "paired_difference_ci95": 1.96 * std / math.sqrt(len(difference)),
                    "episodes_changed": int((difference != 0).sum()),
                    "accuracies_float32": fp32,
                    "accuracies_other": other,
                }
    return result


def mode_scope(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Transductive fine-tuning of one scope on the first ``count`` episodes, from images."""
    scope, shots, count = spec["scope"], int(spec["shots"]), int(spec["count"])
    backbone, dataset = episode_inputs(args)
    sampler = samplers(args, dataset)[shots]
    method = (
        head_method("recommended-head", args.seed)
        if scope == "head"
        else TransductiveFineTuning(scope=scope, seed=args.seed)
    )
    accuracy, seconds = [], []
    for episode_spec in progress_bar(
        list(sampler.take(count)), desc=f"{scope} {shots}-shot", unit="episode"
    ):
        episode = make_episode(dataset, episode_spec, backbone.preprocessing)  # not timed
        start = time.perf_counter()
        logits = method(backbone, episode)
        seconds.append(time.perf_counter() - start)
        assert episode.query_targets is not None
        accuracy.append((logits.argmax(1) == episode.query_targets).float().mean().item())
    return {
        "scope": scope,
        "shots": shots,
        "settings": settings_of(method),
        **summarize(accuracy),
        **timing(seconds),
        "accuracies": accuracy,
        "seconds": seconds,
    }


def mode_features(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Support-init or the recommended head on cached features, through ``fit_features``: one
    episode per call (``single``) or every episode in one call (``batched``)."""
    method_name, path, shots = spec["method"], spec["path"], int(spec["shots"])
    batch = shot_episodes(args, shots)
    method = head_method(method_name, args.seed)
    result: dict[str, Any] = {
        "method": method_name,
        "path": path,
        "shots": shots,
        "settings": settings_of(method),
    }
    single = path != "batched"
    run_method(method, batch.first(1 if single else 8), one_at_a_time=single)  # warm-up
    result["rss_before_timing_mb"] = rss_now_mb()
    run = run_method(method, batch, one_at_a_time=single, show_progress=single)
    if single:
        result.update(run.summary())
        result.update({"accuracies": run.accuracies, "seconds": run.seconds})
    else:
        result.update(summarize(run.accuracies))
        total = run.seconds_total
        result.update(
            {
                "seconds_total": total,
                "episodes_per_s": len(batch) / total,
                "accuracies": run.accuracies,
            }
        )
    return result


def mode_dump(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Write the cached features of the ``--episodes`` episodes of one shot for easyfsl."""
    shots = int(spec["shots"])
    batch = shot_episodes(args, shots)
    meta = {
        "dataset": "mini-imagenet",
        "split": args.split,
        "backbone": BACKBONE,
        "image_size": EPISODE_SIZE,
        "ways": args.ways,
        "shots": shots,
        "queries": args.queries,
        "seed": args.seed,
        "episodes": len(batch),
    }
    torch.save({**batch.tensors(), "meta": meta}, spec["file"])
    return {"file": spec["file"], **meta}


MODES: dict[str, Callable[[argparse.Namespace, dict[str, Any]], dict[str, Any]]] = {
    "peak": mode_peak,
    "embed": mode_embed,
    "cache": mode_cache,
    "dtype-accuracy": mode_dtype_accuracy,
    "scope": mode_scope,
    "features": mode_features,
    "dump": mode_dump,
}


def child(args: argparse.Namespace) -> None:
    spec = json.loads(args.mode)
    torch.set_num_threads(args.threads)
    result = MODES[spec["kind"]](args, spec)
    result["peak_rss_mb"] = peak_rss_mb()
    write_json(args.mode_output, result)


# ----------------------------------------------------------------------------- parent
def run_mode(args: argparse.Namespace, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one mode in a fresh Python process; return its result (with its peak RSS)."""
    output = Path(tempfile.mkstemp(prefix="mode-", suffix=".json", dir=args.work_dir)[1])
    label = " ".join(f"{v}" for k, v in spec.items() if k not in ("features_file", "file"))
    print(f"-- {label}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    command = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
    command += ["--mode", json.dumps(spec), "--mode-output", str(output)]
    subprocess.run(command, check=True)
    result: dict[str, Any] = json.loads(output.read_text())
    result["wall_seconds"] = time.perf_counter() - start
    return result


def run_easyfsl(args: argparse.Namespace, file: Path, method: str) -> dict[str, Any]:
    """One easyfsl method on an episodes file, in the easyfsl venv; its JSON record."""
    output = Path(tempfile.mkstemp(prefix="easyfsl-", suffix=".json", dir=args.work_dir)[1])
    print(f"-- easyfsl {method} {file.name}", file=sys.stderr, flush=True)
    command = [
        str(args.easyfsl_python),
        str(HERE / "easyfsl_methods.py"),
        "--episodes-file",
        str(file),
        "--methods",
        method,
        "--threads",
        str(args.threads),
        "--output",
        str(output),
    ]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore:Failed to initialize NumPy"}
    subprocess.run(command, check=True, env=environment)
    record: dict[str, Any] = json.loads(output.read_text())
    result: dict[str, Any] = record["results"][method]
    result["peak_rss_mb"] = record["peak_rss_mb"]
    result["easyfsl"] = record["easyfsl"]
    result["torch"] = record["torch"]
    return result


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: float | None, digits: int, scale: float = 1.0) -> str:
    """``value * scale`` with ``digits`` decimals, or "-" when missing."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{scale * value:.{digits}f}"


def pct(summary: dict[str, Any]) -> str:
    return f"{100 * summary['accuracy_mean']:.2f} ± {100 * summary['accuracy_ci95']:.2f}"


def part_embed(args: argparse.Namespace, record: dict[str, Any]) -> list[str]:
    peak = run_mode(args, {"kind": "peak"})
    record["matmul_peak"] = peak
    rows_out: list[dict[str, Any]] = []
    for size in args.embed_sizes:
        for variant in args.embed_variants:
            features_file = Path(args.work_dir) / f"features-{size}-{variant}.pt"
            spec = {"kind": "embed", "size": size, "variant": variant}
            rows_out.append(run_mode(args, {**spec, "features_file": str(features_file)}))
            rows_out[-1]["features_file"] = str(features_file)
    by_size: dict[int, dict[str, Any]] = {}
    for row in rows_out:
        if row["variant"] == "naive":
            by_size[row["size"]] = row
    for row in rows_out:
        naive = by_size.get(row["size"])
        if naive is None:
            continue
        flops = peak["flops_per_image"][str(row["size"])]
        row["flops_per_image"] = flops
        row["speedup_vs_naive"] = row["images_per_s"] / naive["images_per_s"]
        row["gflops"] = row["images_per_s"] * flops / 1e9
        row["fraction_of_fp32_peak"] = row["gflops"] / peak["float32_gflops"]
        row["fraction_of_bf16_peak"] = row["gflops"] / peak["bfloat16_gflops"]
        mine = torch.load(row["features_file"], weights_only=True)
        reference = torch.load(naive["features_file"], weights_only=True)
        row["max_abs_difference_vs_naive"] = (mine - reference).abs().max().item()
        row["min_cosine_vs_naive"] = (
            torch.nn.functional.cosine_similarity(mine, reference).min().item()
        )
    record["embedding"] = rows_out
    lines = [
        f"### (a) Embedding throughput, EfficientNet-Lite0, {args.threads} threads",
        "",
        f"images/s: one call on {args.embed_images} pre-decoded images (best of "
        f"{args.embed_repeats}); marginal: images/s beyond one batch (a call of {args.embed_images}"
        " minus a call of one batch), i.e. without the per-call cost (freeze: the trace).",
        "",
        f"matmul peak ({peak['matrix_size']}²): float32 {peak['float32_gflops']:.1f} GFLOP/s, "
        f"bfloat16 {peak['bfloat16_gflops']:.1f} GFLOP/s; FLOPs/image: "
        + ", ".join(f"{s} px {f / 1e9:.3f} G" for s, f in peak["flops_per_image"].items()),
        "",
        table(
            [
                "px",
                "mode",
                "batch",
                "images/s",
                "x naive",
                "marginal images/s",
                "per-call s",
                "GFLOP/s",
                "% fp32 peak",
                "% bf16 peak",
                "min cos vs naive",
                "peak RSS MB",
            ],
            [
                (
                    r["size"],
                    r["variant"].partition("@")[0],
                    r["batch_size"],
                    number(r["images_per_s"], 1),
                    number(r.get("speedup_vs_naive"), 2),
                    number(r.get("marginal_images_per_s"), 1),
                    number(r.get("per_call_overhead_seconds"), 2),
                    number(r.get("gflops"), 1),
                    number(r.get("fraction_of_fp32_peak"), 1, 100),
                    number(r.get("fraction_of_bf16_peak"), 1, 100),
                    number(r.get("min_cosine_vs_naive"), 5),
                    f"{r['peak_rss_mb']:.0f}",
                )
                for r in rows_out
            ],
        ),
    ]
    return lines


def part_accuracy(args: argparse.Namespace, record: dict[str, Any]) -> list[str]:
    result = run_mode(args, {"kind": "dtype-accuracy"})
    record["dtype_accuracy"] = result
    rows = [v for v in result.values() if isinstance(v, dict)]
    return [
        f"### (a) Accuracy from FeatureCache variants vs float32, {args.accuracy_episodes} "
        f"episodes of {EPISODE_SIZE} px mini-ImageNet {args.split}, 5-way, "
        f"{args.queries} queries (paired difference: variant - float32, same episodes)",
        "",
        table(
            [
                "shots",
                "method",
                "float32 %",
                "variant",
                "variant %",
                "paired diff (points)",
                "episodes changed",
            ],
            [
                (
                    r["shots"],
                    r["method"],
                    pct(r["float32"]),
                    r["variant"],
                    pct(r["other"]),
                    f"{100 * r['paired_difference_mean']:+.2f} ± "
                    f"{100 * r['paired_difference_ci95']:.2f}",
                    r["episodes_changed"],
                )
                for r in rows
            ],
        ),
    ]


def features_results(args: argparse.Namespace, record: dict[str, Any]) -> dict[str, Any]:
    """The cached-feature modes (c) (shared with (b) and (d)), run once."""
    if "features_modes" not in record:
        modes: dict[str, Any] = {}
        for shots in args.shots:
            for method in ("support-init", "recommended-head"):
                for path in ("single", "batched"):
                    spec = {
                        "kind": "features",
                        "method": method,
                        "path": path,
                        "shots": shots,
                    }
                    modes[f"{shots}-shot {method} {path}"] = run_mode(args, spec)
        record["features_modes"] = modes
    result: dict[str, Any] = record["features_modes"]
    return result


def part_scopes(args: argparse.Namespace, record: dict[str, Any]) -> list[str]:
    scopes: dict[str, Any] = {}
    for shots in args.shots:
        for scope in ("all", "last", "head"):
            spec = {"kind": "scope", "scope": scope, "shots": shots, "count": args.slow_episodes}
            scopes[f"{shots}-shot {scope}"] = run_mode(args, spec)
    record["scopes"] = scopes
    features = features_results(args, record)
    rows = []
    for shots in args.shots:
        for scope in ("all", "last", "head"):
            r = scopes[f"{shots}-shot {scope}"]
            rows.append(
                (
                    shots,
                    f"{scope} (images)",
                    r["episodes"],
                    pct(r),
                    f"{r['seconds_per_episode_median']:.3f}",
                    f"{r['seconds_per_episode_mean']:.3f}",
                    f"{r['peak_rss_mb']:.0f}",
                )
            )
        head = features[f"{shots}-shot recommended-head single"]
        first = head["accuracies"][: args.slow_episodes]
        first_s = head["seconds"][: args.slow_episodes]
        rows.append(
            (
                shots,
                "head (cached features)",
                len(first),
                pct(summarize(first)),
                f"{float(np.median(first_s)):.4f}",
                f"{float(np.mean(first_s)):.4f}",
                f"{head['peak_rss_mb']:.0f}",
            )
        )
        rows.append(
            (
                shots,
                "head (cached features)",
                head["episodes"],
                pct(head),
                f"{head['seconds_per_episode_median']:.4f}",
                f"{head['seconds_per_episode_mean']:.4f}",
                f"{head['peak_rss_mb']:.0f}",
            )
        )
    settings = {
        scope: scopes[f"{args.shots[0]}-shot {scope}"]["settings"]
        for scope in ("all", "last", "head")
    }
    record["scope_settings"] = settings
    return [
        f"### (b) Transductive fine-tuning by scope, {EPISODE_SIZE} px mini-ImageNet {args.split}, "
        f"5-way, {args.queries} queries",
        "",
        "all/last: paper defaults "
        + ", ".join(
            f"{k}={settings['all'][k]}" for k in ("temperature", "lr", "epochs", "entropy_weight")
        )
        + " (augment on for all); head: RECOMMENDED "
        + ", ".join(
            f"{k}={settings['head'][k]}"
            for k in ("temperature", "lr", "epochs", "entropy_weight", "balance_weight")
        ),
        "",
        table(
            ["shots", "scope", "episodes", "accuracy %", "s/episode median", "mean", "peak RSS MB"],
            rows,
        ),
    ]


def part_batched(args: argparse.Namespace, record: dict[str, Any]) -> list[str]:
    features = features_results(args, record)
    rows = []
    for shots in args.shots:
        for method in ("support-init", "recommended-head"):
            single = features[f"{shots}-shot {method} single"]
            batched = features[f"{shots}-shot {method} batched"]
            for name, r in (("one at a time", single), ("batched", batched)):
                rows.append(
                    (
                        shots,
                        method,
                        name,
                        r["episodes"],
                        f"{r['episodes_per_s']:.1f}",
                        f"{r['episodes_per_s'] / single['episodes_per_s']:.1f}",
                        pct(r),
                        f"{r['peak_rss_mb']:.0f}",
                    )
                )
    return [
        "### (c) Head methods on cached features: batched vs one at a time, "
        f"{args.threads} threads",
        "",
        table(
            [
                "shots",
                "method",
                "path",
                "episodes",
                "episodes/s",
                "x single",
                "accuracy %",
                "peak RSS MB",
            ],
            rows,
        ),
    ]


def part_easyfsl(args: argparse.Namespace, record: dict[str, Any]) -> list[str]:
    python = Path(args.easyfsl_python)
    if not python.exists():
        record["easyfsl"] = {"skipped": f"{python} not found; see benchmarks/easyfsl_methods.py"}
        return [f"### (d) easyfsl: skipped ({python} not found)"]
    features = features_results(args, record)
    results: dict[str, Any] = {}
    rows = []
    for shots in args.shots:
        file = Path(args.work_dir) / f"episodes-{shots}shot.pt"
        dump = run_mode(args, {"kind": "dump", "shots": shots, "file": str(file)})
        results[f"{shots}-shot dump"] = dump
        for method in ("support-init", "recommended-head"):
            for path in ("single", "batched"):
                r = features[f"{shots}-shot {method} {path}"]
                median = r.get("seconds_per_episode_median")
                rows.append(
                    (
                        shots,
                        "anyshot",
                        f"{method} ({'one at a time' if path == 'single' else 'batched'})",
                        pct(r),
                        f"{r['episodes_per_s']:.1f}",
                        "-" if median is None else f"{1000 * median:.2f}",
                        f"{r['peak_rss_mb']:.0f}",
                    )
                )
        for method in args.easyfsl_methods:
            r = run_easyfsl(args, file, method)
            results[f"{shots}-shot {method}"] = r
            rows.append(
                (
                    shots,
                    f"easyfsl {r['easyfsl']}",
                    method,
                    pct(r),
                    f"{r['episodes_per_s']:.1f}",
                    f"{1000 * r['seconds_per_episode_median']:.2f}",
                    f"{r['peak_rss_mb']:.0f}",
                )
            )
    record["easyfsl"] = results
    return [
        f"### (d) anyshot vs easyfsl on identical cached {EPISODE_SIZE} px features, "
        f"{args.episodes} episodes, {args.threads} threads",
        "",
        table(
            [
                "shots",
                "library",
                "method",
                "accuracy %",
                "episodes/s",
                "ms/episode median",
                "peak RSS MB",
            ],
            rows,
        ),
    ]


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT / "mini-imagenet",
        cache_dir=FEATURE_CACHE,
        threads=2,
        episodes=500,
        seed=0,
        output=OPTIONAL,
        helps={
            "threads": "torch threads in every mode",
            "episodes": "head / support-init / easyfsl",
        },
    )
    parser.add_argument("--split", default="val")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--embed-images", type=int, default=256)
    parser.add_argument("--embed-sizes", type=int, nargs="+", default=[84, 224])
    parser.add_argument(
        "--embed-variants",
        nargs="+",
        default=list(EMBED_VARIANTS),
        help=f"of {EMBED_VARIANTS}, plus plain-compile-fp32 / plain-compile-bf16 (torch.compile, "
        "not anyshot API; minutes of compiling per size); '@N' sets the batch size "
        "(default --batch-size)",
    )
    parser.add_argument("--embed-repeats", type=int, default=2, help="best of N timed passes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul side for the peak")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--slow-episodes", type=int, default=10, help="scopes all, last")
    parser.add_argument("--accuracy-episodes", type=int, default=200, help="fp32 vs bf16")
    parser.add_argument(
        "--easyfsl-python", type=Path, default=HERE / ".venv-easyfsl" / "bin" / "python"
    )
    parser.add_argument(
        "--easyfsl-methods",
        nargs="+",
        default=["TransductiveFinetuning", "TIM", "PrototypicalNetworks"],
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="keep scratch files (episode feature dumps, per-variant features) here; default a "
        "temporary folder, removed at the end",
    )
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode-output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode is not None:
        child(args)
        return
    if args.output is None:
        parser.error("--output is required")
    scratch = args.work_dir is None  # a temporary folder, removed at the end
    if args.work_dir is None:
        args.work_dir = Path(tempfile.mkdtemp(prefix="anyshot-speed-"))
        sys.argv += ["--work-dir", str(args.work_dir)]
    args.work_dir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    record: dict[str, Any] = {
        "setting": {
            **config_of(args, leave_out=("mode", "mode_output")),
            "backbone": BACKBONE,
            "episode_image_size": EPISODE_SIZE,
            **environment("torch", "cpu_capability", "OMP_NUM_THREADS", "machine", "cpu_count"),
        }
    }
    needs_features = {"accuracy", "scopes", "batched", "easyfsl"} & set(args.parts)
    if needs_features:
        count = max(args.episodes, args.slow_episodes, args.accuracy_episodes)
        record["cache"] = {
            "float32": run_mode(args, {"kind": "cache", "variant": "float32", "episodes": count})
        }
        if "accuracy" in args.parts:
            for variant in FEATURE_VARIANTS:
                if variant != "float32":
                    spec = {"kind": "cache", "variant": variant, "episodes": args.accuracy_episodes}
                    record["cache"][variant] = run_mode(args, spec)
    sections: list[str] = []
    for part, function in (
        ("embed", part_embed),
        ("accuracy", part_accuracy),
        ("scopes", part_scopes),
        ("batched", part_batched),
        ("easyfsl", part_easyfsl),
    ):
        if part in args.parts:
            sections.append("\n".join(function(args, record)))
            print("\n" + sections[-1] + "\n", flush=True)
    record["wall_seconds"] = time.perf_counter() - started
    record["tables_markdown"] = "\n\n".join(sections)
    write_json(args.output, record)
    print(f"wrote {args.output} ({record['wall_seconds']:.0f} s)")
    if scratch:  # episode dumps for easyfsl are hundreds of MB
        shutil.rmtree(args.work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
