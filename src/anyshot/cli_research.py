"""The researcher side of the ``anyshot`` command: ``evaluate``'s protocols and sweeps, ``report``.

``anyshot evaluate`` options added here: ``--protocol {fixed,variable,imbalanced,many-way}``,
``--total-queries``, ``--dirichlet-alpha``, ``--episodes-file``, ``--save-episodes``,
``--hardness``, ``--hardness-image-size`` and ``--sweep``; ``--ways`` takes a comma-separated list
(or ``all`` with ``--protocol many-way``). A sweep writes **one results file per setting**:
``--output r.json`` becomes ``r-5w1s.json``, ``r-10w1s.json``, ... (``r-allw1s.json`` for all
ways); ``--save-episodes e.jsonl`` likewise. ``anyshot report`` reads any number of results files.

Speed options (:func:`add_speed_options`): ``--cache-dir DIR`` embeds each image once into a
:class:`~anyshot.feature_cache.FeatureCache` and runs support-init / head-scope methods on the
cached rows, same-shaped episodes batched (:mod:`anyshot.cached_evaluation`); ``--workers N``
(or ``torchrun``) shards the episodes over processes (:mod:`anyshot.sharding`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from anyshot.errors import ConfigurationError

__all__ = [
    "EPILOG_PROTOCOLS",
    "RESEARCH_COMMANDS",
    "add_protocol_options",
    "add_report_command",
    "add_speed_options",
    "run_evaluate",
    "run_report",
    "ways_list",
]

EPILOG_PROTOCOLS = """\
protocols (--protocol):
  fixed        N-way K-shot Q-query (default); --shots may list one count per way
  many-way     the same with N up to every class: --ways all
  imbalanced   fixed supports; --total-queries split across classes by a Dirichlet draw
               (--dirichlet-alpha); a class may get no query; --queries is not used
  variable     Meta-Dataset episodes: 5-50 ways, 1+ shots per class, <= 500 support images,
               <= 10 queries per class; --ways/--shots/--queries are not used

sweeps: --ways 5,10,20 --shots 1,5 evaluates every pair and writes one results file per setting,
  OUTPUT-5w1s.json, OUTPUT-5w5s.json, ... (one --ways value with several --shots needs --sweep,
  else the list is one shot count per way)

  anyshot evaluate --dataset omniglot --data-root ../shared/data/omniglot --ways 5,10,20 \\
      --shots 1,5 --episodes 100 --method support-init --hardness --image-size 84 --output r.json
  anyshot evaluate ... --protocol variable --save-episodes md.jsonl --output md.json
  anyshot evaluate ... --episodes-file md.jsonl --method transductive --output md-td.json
  anyshot report r-*.json md*.json --output report/
"""


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
        if number < 1:
            raise argparse.ArgumentTypeError(f"every way count must be >= 1, got {text!r}")
        values.append(number)
    if not values:
        raise argparse.ArgumentTypeError(f"--ways needs at least one value, got {text!r}")
    return values


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_protocol_options(parser: argparse.ArgumentParser) -> None:
    """``evaluate``'s protocol, sweep, episode-file and hardness options."""
    from anyshot.protocols import PROTOCOLS

    group = parser.add_argument_group("protocol (see 'protocols' below)")
    group.add_argument(
        "--protocol", choices=PROTOCOLS, help="how episodes are drawn (default: fixed)"
    )
    group.add_argument(
        "--total-queries",
        type=_positive_int,
        default=75,
        help="imbalanced: queries per episode (default 75)",
    )
    group.add_argument(
        "--dirichlet-alpha",
        type=_positive_float,
        default=2.0,
        help="imbalanced: Dirichlet concentration; smaller = more imbalanced (default 2)",
    )
    group.add_argument(
        "--sweep",
        action="store_true",
        help="treat the --ways and --shots lists as a grid (implied by several --ways values)",
    )
    group.add_argument(
        "--episodes-file",
        type=Path,
        help="run exactly the episodes of this file (from --save-episodes); ignores the "
        "sampling options",
    )
    group.add_argument(
        "--save-episodes", type=Path, help="also write the sampled episodes to this .jsonl file"
    )
    group.add_argument(
        "--hardness",
        action="store_true",
        help="record each episode's hardness (Dhillon et al. eq. 9) with the ImageNet "
        "EfficientNet-Lite0's logits",
    )
    group.add_argument(
        "--hardness-image-size",
        type=_positive_int,
        help="input size of the hardness model (default: --image-size, else 224)",
    )


def _settings(args: argparse.Namespace) -> list[tuple[int | None, list[int] | None]]:
    """The (ways, shots) settings to run; ``(None, None)`` when the protocol chooses itself."""
    protocol = args.protocol or "fixed"
    explicit = args.ways is not None or args.shots is not None
    ways_values: list[int | None] = args.ways if args.ways is not None else [5]
    shot_values: list[int] = args.shots if args.shots is not None else [1]
    sweep = args.sweep or len(ways_values) > 1
    if args.episodes_file is not None:
        if explicit or sweep or args.protocol or args.save_episodes:
            raise ConfigurationError(
                "--episodes-file runs the episodes saved in the file; drop --ways, --shots, "
                "--sweep, --protocol and --save-episodes"
            )
        return [(None, None)]
    if protocol == "variable":
        if explicit or sweep:
            raise ConfigurationError(
                "--protocol variable draws ways and shots itself; drop --ways, --shots, --sweep"
            )
        return [(None, None)]
    if sweep:
        return [(w, [k]) for w in ways_values for k in shot_values]
    ways = ways_values[0]
    if len(shot_values) == 1 or (ways is not None and len(shot_values) == ways):
        return [(ways, shot_values)]
    raise ConfigurationError(
        f"--shots lists {len(shot_values)} counts for {ways if ways else 'all'} ways: give one "
        "count, one count per way, or add --sweep to evaluate each count as its own setting"
    )


def _suffixed(path: Path, ways: int | None, shots: list[int] | None, many: bool) -> Path:
    if not many or shots is None:
        return path
    return path.with_name(f"{path.stem}-{'all' if ways is None else ways}w{shots[0]}s{path.suffix}")


def _from_file_config(specs: list[Any], header: dict[str, Any]) -> dict[str, Any]:
    """Protocol fields for results run from an episode file (its header, else the specs)."""
    saved = dict(header.get("header") or {})
    if "protocol" in saved:
        return saved
    ways = {len(s.classes) for s in specs}
    shots = {k for s in specs for k in s.shots}
    queries = {len(q) for s in specs for q in s.query}
    return {
        "protocol": "fixed",
        "ways": ways.pop() if len(ways) == 1 else None,
        "shots": [shots.pop()] if len(shots) == 1 else None,
        "queries": queries.pop() if len(queries) == 1 else None,
    }


def _hardness_hook(model: Any, specs: list[Any]) -> Any:
    """``(index, episode) -> Omega`` of ``specs[index]`` (the episode's dataset items)."""

    def hook(index: int, _episode: Any) -> float:
        return float(model(specs[index]))

    return hook


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    """``evaluate``'s speed options: ``--cache-dir`` and ``--workers``."""
    group = parser.add_argument_group("speed")
    group.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="embed every image the episodes use once, keep the features in this folder "
        "(reused by later runs with the same backbone, preprocessing and files) and run the "
        "method on them, many same-shaped episodes at once; for support-init and --scope head "
        "only (other scopes train the backbone and run as usual, with a note). Per-episode "
        "seconds then are a batch's time divided by its episodes",
    )
    group.add_argument(
        "--cache-dtype",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="precision of the cached forward pass: auto = bfloat16 on a CPU with native "
        "bfloat16 instructions (AVX512-BF16 / AMX; measured ~3.5x the images/s of float32 on "
        "this team's CPU with accuracy unchanged within noise, see BENCHMARKS.md), float32 "
        "elsewhere (default: auto)",
    )
    group.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="processes to share the episodes (episode i goes to worker i %% N; results are "
        "identical to one process apart from seconds); each uses max(1, CPUs / N) torch "
        "threads unless --threads is given. Under 'torchrun --nproc-per-node N -m anyshot "
        "evaluate ...' the N torchrun processes are the workers (default 1)",
    )


def run_evaluate(args: argparse.Namespace) -> int:
    """``anyshot evaluate``: sample (or read) episodes per setting, evaluate, write results.

    With ``--workers N`` (or under ``torchrun``) every process runs this with its own
    :class:`~anyshot.sharding.Shard` of the episodes; rank 0 prints and writes.
    """
    from anyshot.sharding import launch

    return launch(
        _evaluate_job,
        args,
        workers=getattr(args, "workers", 1),
        threads=getattr(args, "threads", None),
    )


def _evaluate_job(args: argparse.Namespace, shard: Any) -> int:
    """One process's part of ``anyshot evaluate`` (see :func:`run_evaluate`)."""
    import torch

    from anyshot.backbones import load_backbone
    from anyshot.cli import _method_options, _summary_line
    from anyshot.data import load_dataset
    from anyshot.episode_files import load_episodes, read_episode_header, save_episodes
    from anyshot.episodes import make_episode
    from anyshot.evaluation import EvaluationResult, evaluate
    from anyshot.evaluation.cached import (
        embed_items,
        episode_items,
        evaluate_cached,
        shard_episodes,
        supports_cached,
    )
    from anyshot.feature_cache import FeatureCache, fastest_dtype
    from anyshot.hardness import HardnessModel
    from anyshot.methods import build_method
    from anyshot.protocols import build_sampler, sampler_config
    from anyshot.report import method_label

    main_rank = shard.is_main
    if not main_rank:
        args.quiet = True  # one progress bar and one "done in" line, from rank 0
    settings = _settings(args)
    protocol = args.protocol or "fixed"
    overrides = {
        k: v for k, v in (("image_size", args.image_size), ("embedding", args.embedding)) if v
    }
    with torch.random.fork_rng():  # a randomly initialised backbone depends on --seed only
        torch.manual_seed(args.seed)
        backbone = load_backbone(args.backbone, **overrides)
    if args.device:
        backbone = backbone.to(args.device)
    dataset = load_dataset(args.dataset, args.data_root, args.split)
    method = build_method(args.method, **_method_options(args, args.seed))
    preprocessing = backbone.preprocessing
    cache_dir = getattr(args, "cache_dir", None)
    cache = None
    if cache_dir is not None:
        if supports_cached(method):
            dtype = args.cache_dtype if args.cache_dtype != "auto" else fastest_dtype(args.device)
            cache = FeatureCache(cache_dir, dtype=dtype)
        elif main_rank:
            print(
                f"anyshot: note: --cache-dir is not used: --scope {args.scope} trains the "
                "backbone, so every episode embeds its own images (cached features work with "
                "support-init and --scope head)",
                file=sys.stderr,
            )
    hardness_model = None
    if args.hardness:
        hardness_model = HardnessModel(
            dataset,
            image_size=args.hardness_image_size or args.image_size or 224,
            batch_size=args.batch_size,
            device=args.device,
        )
    many = len(settings) > 1
    for ways, shots in settings:
        if args.episodes_file is not None:
            specs = load_episodes(args.episodes_file, dataset)
            protocol_config = _from_file_config(specs, read_episode_header(args.episodes_file))
            protocol_config["episodes_file"] = str(args.episodes_file)
        else:
            sampler = build_sampler(
                protocol,
                dataset.labels,
                ways=ways,
                shots=(shots[0] if len(shots) == 1 else shots) if shots else 1,
                queries=args.queries,
                total_queries=args.total_queries,
                dirichlet_alpha=args.dirichlet_alpha,
                seed=args.seed,
            )
            specs = list(sampler.take(args.episodes))
            protocol_config = sampler_config(sampler)
            if args.save_episodes is not None and main_rank:
                path = save_episodes(
                    _suffixed(args.save_episodes, ways, shots, many),
                    dataset,
                    specs,
                    header={**protocol_config, "dataset": args.dataset, "split": args.split},
                )
                print(f"episodes written to {path}")
        output = _suffixed(args.output, ways, shots, many)
        config = {
            "command": "evaluate",
            "dataset": args.dataset,
            "data_root": str(args.data_root),
            "split": args.split,
            **protocol_config,
            "episodes": len(specs),
            "seed": args.seed,
            "method": args.method,
            "method_options": {k: v for k, v in vars(method).items() if not k.startswith("_")},
            "backbone": args.backbone,
            "preprocessing": preprocessing.to_dict(),
        }
        if hardness_model is not None:
            config["hardness"] = hardness_model.config()
        if cache is not None:
            config["feature_cache"] = str(cache_dir)
            config["feature_cache_dtype"] = cache.dtype
        if shard.world_size > 1:
            config["workers"] = shard.world_size
        if cache is not None:  # whole batches per worker: bitwise the single-process logits
            mine = shard_episodes(specs, shard.rank, shard.world_size)
        else:
            mine = shard.indices(len(specs))
        partial = EvaluationResult(config=config)
        interrupted = False
        try:
            if cache is not None:
                # The ranks share the embedding, then each reads its episodes' rows.
                everything = episode_items(specs)
                cache.features(
                    backbone,
                    dataset,
                    everything[shard.rank :: shard.world_size],
                    batch_size=args.batch_size,
                    show_progress=not args.quiet,
                )
                shard.barrier()
                if mine:
                    features = embed_items(
                        cache,
                        backbone,
                        dataset,
                        episode_items(specs[i] for i in mine),
                        batch_size=args.batch_size,
                    )
                    cached_hook = (
                        None
                        if hardness_model is None
                        else _cached_hardness_hook(hardness_model, specs)
                    )
                    partial = evaluate_cached(
                        method,  # supports_cached(method) holds
                        features,
                        specs,
                        indices=mine,
                        config=config,
                        show_progress=not args.quiet,
                        on_record=partial.records.append,
                        hardness=cached_hook,
                    )
            elif mine:
                episodes = (make_episode(dataset, specs[i], preprocessing) for i in mine)
                hook = None if hardness_model is None else _hardness_hook(hardness_model, specs)
                keep = _reindexing(partial.records, mine)
                partial = evaluate(
                    method,
                    backbone,
                    episodes,
                    total=len(mine),
                    config=config,
                    show_progress=not args.quiet,
                    on_record=keep,
                    hardness=None if hook is None else _shard_hook(hook, mine),
                )
        except KeyboardInterrupt:
            interrupted = True
        gathered = shard.all_gather((partial.records, interrupted))
        records = sorted((r for part, _ in gathered for r in part), key=lambda r: r["index"])
        interrupted = any(flag for _, flag in gathered)
        if not main_rank:
            if interrupted:
                return 130
            continue
        result = EvaluationResult(records=records, config=partial.config)
        if interrupted:
            if records:
                result.config["interrupted"] = True
                result.save(output)
                print(
                    f"interrupted: {len(records)} finished episodes saved to {output}",
                    file=sys.stderr,
                )
            return 130
        result.save(output)
        what = "" if not many else f" [{ways or 'all'}-way {shots[0] if shots else '?'}-shot]"
        print(_summary_line(f"{method_label(config)}{what}", result.summary))
        print(f"results written to {output}")
    return 0


def _reindexing(records: list[dict[str, Any]], mine: list[int]) -> Any:
    """``on_record`` for a shard: the record's ``index`` becomes its position in all the
    episodes (``mine[local index]``), then the record is appended to ``records``."""

    def keep(record: dict[str, Any]) -> None:
        record["index"] = mine[record["index"]]
        records.append(record)

    return keep


def _shard_hook(hook: Any, mine: list[int]) -> Any:
    """``hook`` called with the position in all the episodes, not in this shard's."""

    def shifted(local: int, episode: Any) -> float:
        return float(hook(mine[local], episode))

    return shifted


def _cached_hardness_hook(model: Any, specs: list[Any]) -> Any:
    """``index -> Omega`` of ``specs[index]``."""

    def hook(index: int) -> float:
        return float(model(specs[index]))

    return hook


def add_report_command(sub: Any) -> None:
    """The ``report`` subcommand."""
    report = sub.add_parser(
        "report",
        help="tables (mean, std, 95%% CI, episodes), hardness lines and plots of results files",
        description="Summarise results files of 'anyshot evaluate' (or bundles of them): a "
        "table per dataset with mean accuracy, std across episodes, 95% CI and episode count "
        "per method and setting, as Markdown and CSV; accuracy against episode hardness with a "
        "least-squares line per method and the area under it; accuracy against ways and shots. "
        "Warns when a 95% CI is wider than +-2 points or a many-way setting has fewer than "
        "100 episodes.",
        epilog="example:\n  anyshot report results-*.json --output report/\n\nwrites "
        "report/report.md, report/report.csv, report/report-hardness.csv and "
        "report/plots/report-*.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("results", nargs="+", type=Path, help="results JSON files")
    report.add_argument("--output", type=Path, required=True, help="folder to write into")
    report.add_argument("--name", default="report", help="stem of the files (default: report)")
    report.add_argument("--no-plots", action="store_true", help="tables only")
    report.add_argument("--quiet", action="store_true", help="print only warnings")


def run_report(args: argparse.Namespace) -> int:
    """``anyshot report``: write the report; warnings go to stderr."""
    from anyshot.report import write_report

    report = write_report(args.results, args.output, name=args.name, plots=not args.no_plots)
    for warning in report.warnings:
        print(f"anyshot: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        for path in (report.markdown, report.csv, report.hardness_csv, *report.plots):
            print(f"written {path}")
    return 0


RESEARCH_COMMANDS = {"report": run_report}
