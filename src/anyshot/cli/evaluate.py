"""The researcher's commands: ``evaluate`` (protocols, sweeps, speed options), ``report``, ``demo``.

``anyshot evaluate`` builds an :class:`~anyshot.evaluation.run.EvaluationConfig` from its
arguments (:func:`config_from_args`) and runs :func:`~anyshot.evaluation.run.run_evaluation`;
it only prints. ``--protocol {fixed,variable,imbalanced,many-way,present-classes}``,
``--total-queries``, ``--dirichlet-alpha``, ``--present-classes``, ``--episodes-file``,
``--save-episodes``, ``--hardness``, ``--hardness-image-size`` and ``--sweep``; ``--ways`` takes a
comma-separated list (or ``all`` with ``--protocol many-way`` or ``present-classes``). A sweep
writes **one results file per setting**: ``--output r.json`` becomes ``r-5w1s.json``,
``r-10w1s.json``, ... (``r-allw1s.json`` for all ways);
``--save-episodes e.jsonl`` likewise. Speed: ``--cache-dir DIR`` (cached features, batched
episodes: :mod:`anyshot.evaluation.cached`), ``--workers N`` or ``torchrun``
(:mod:`anyshot.sharding`). ``anyshot report`` reads any number of results files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from anyshot.backbones.preprocessing import INPUT_SPECS
from anyshot.cli.options import (
    add_backbone_options,
    add_dataset_argument,
    add_method_options,
    add_run_options,
    method_from_args,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
    preprocessing_overrides,
    shots_list,
    ways_list,
)
from anyshot.demo import DEMO_EPISODES
from anyshot.evaluation.records import EvaluationResult
from anyshot.evaluation.run import DEFAULT_SHOTS, DEFAULT_WAYS, EvaluationConfig
from anyshot.hardness import HARDNESS_ARCH
from anyshot.methods.finetune import field_default
from anyshot.methods.scope_rule import ScopeRule

__all__ = ["add_commands", "config_from_args", "run_evaluate"]


def _default(name: str) -> Any:
    """The default of :class:`~anyshot.evaluation.run.EvaluationConfig`'s field ``name``: the
    one source of ``evaluate``'s defaults and of what its help says they are."""
    return field_default(EvaluationConfig, name)


EPILOG_EVALUATE = """\
examples:
  # your own images, one folder per class: mydata/<class>/<images> (at least --ways classes
  # of --shots + --queries images each); features cached for later runs
  anyshot evaluate --dataset folder --data-root mydata --ways 5 --shots 1 --queries 10 \\
      --episodes 100 --cache-dir cache --output results.json

  # benchmarks (where the data comes from and its layout: README, "Benchmark data sets")
  # 5-way 1-shot on Omniglot test with the offline ImageNet EfficientNet-Lite0, head scope
  anyshot evaluate --dataset omniglot --data-root ../shared/data/omniglot --split test \\
      --ways 5 --shots 1 --queries 15 --episodes 200 --method transductive --scope head \\
      --backbone efficientnet-lite0 --image-size 84 --output omniglot-5w1s.json

  # unbalanced supports: way 1 gets 1 shot, way 2 gets 5, ...
  anyshot evaluate --dataset mini-imagenet --data-root ../shared/data/mini-imagenet \\
      --split val --ways 5 --shots 1,5,10,1,2 --method support-init --output imb.json

  # a pre-trained checkpoint instead of a named architecture
  anyshot evaluate ... --backbone benchmarks/checkpoints/omniglot-conv4.pt

The output JSON holds {"summary": {accuracy_mean, accuracy_std, accuracy_ci95, episodes, ...},
"config": {...}, "episodes": [{accuracy, ways, shots, queries, seconds, ...}, ...]}; accuracies
are fractions in [0, 1]. The same --seed gives the same episodes on any machine. A run stopped
by Ctrl-C, or by an image that cannot be read part-way, still writes its finished episodes
("interrupted" or "stopped_by" in the config). From Python:
anyshot.evaluation.run.run_evaluation(EvaluationConfig(...)).
"""

EPILOG_PROTOCOLS = """\
protocols (--protocol):
  fixed        N-way K-shot Q-query (default); --shots may list one count per way
  many-way     the same with N up to every class: --ways all
  imbalanced   fixed supports; --total-queries split across classes by a Dirichlet draw
               (--dirichlet-alpha); a class may get no query; --queries is not used
  variable     Meta-Dataset episodes: 5-50 ways, 1+ shots per class, <= 500 support images,
               <= 10 queries per class; --ways/--shots/--queries are not used
  present-classes
               PADDLE's realistic query sets (Martin et al., NeurIPS 2022): a support of --ways
               classes (or all), --total-queries queries from only --present-classes of them,
               chosen at random per episode and split evenly (a class that cannot supply its
               share gives what it has, the others with room make up the rest); --queries is
               not used

  open-set     N-way K-shot supports; --inlier-queries queries of the N classes plus
               --outlier-queries outliers: images of --outlier-classes other classes of the
               split (never a support class; the method gets them as queries, not their
               label). Records add AUROC and AUPR of classify's outlier_score (cosine
               distance to the nearest class mean of the frozen embeddings, averaged with the
               centred one where the queries cover the classes: the same for every --method;
               from the embeddings the method uses, or, at --scope last / all, from one more
               forward pass of each episode's images) and the AUROC of the method's
               1 - max softmax probability (outliers as positives); accuracy is the inlier
               queries' accuracy

  anyshot evaluate ... --protocol present-classes --ways 20 --present-classes 3 \\
      --total-queries 75 --output pc.json
  anyshot evaluate ... --protocol open-set --ways 5 --shots 1 --inlier-queries 15 \\
      --outlier-queries 15 --output os.json

sweeps: --ways 5,10,20 --shots 1,5 evaluates every pair and writes one results file per setting,
  OUTPUT-5w1s.json, OUTPUT-5w5s.json, ... (one --ways value with several --shots needs --sweep,
  else the list is one shot count per way)

  anyshot evaluate --dataset omniglot --data-root ../shared/data/omniglot --ways 5,10,20 \\
      --shots 1,5 --episodes 100 --method support-init --hardness --image-size 84 --output r.json
  anyshot evaluate ... --protocol variable --save-episodes md.jsonl --output md.json
  anyshot evaluate ... --episodes-file md.jsonl --method transductive --output md-td.json
  anyshot report r-*.json md*.json --output report/
"""


def add_commands(sub: Any) -> None:
    """Register ``evaluate``, ``report`` and ``demo`` on the subparsers ``sub``."""
    _add_evaluate(sub)
    _add_report(sub)
    _add_demo(sub)


# --- evaluate ---------------------------------------------------------------------------------
def _add_evaluate(sub: Any) -> None:
    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate a method on seeded few-shot episodes of a dataset",
        description="Evaluate a few-shot method on N-way K-shot Q-query episodes sampled with a "
        "seed, and write one record per episode plus mean, std and 95% CI as JSON.",
        epilog=EPILOG_EVALUATE + "\n" + EPILOG_PROTOCOLS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = evaluate.add_argument_group("data")
    add_dataset_argument(data)
    data.add_argument(
        "--data-root",
        required=True,
        type=Path,
        help="omniglot: folder with images_*.zip and splits/; mini-imagenet: folder with "
        "{split}.csv and images/ (or {split}/<wnid>/*.jpg); tiered-imagenet: "
        "{split}_images_png.pkl and {split}_labels.pkl; cifar-fs: CIFAR-100 python pickles and "
        "the Bertinetto split files; fc100: CIFAR-100 python pickles; folder: "
        "ROOT/<class>/<images> (every class, whatever --split), or ROOT/<split>/<class>/... "
        "when every sub-folder of ROOT is train, val (or validation) or test, in any case",
    )
    data.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default=_default("split"),
        help=f"which classes the episodes are drawn from (default: {_default('split')})",
    )
    episodes = evaluate.add_argument_group("episodes")
    episodes.add_argument(
        "--ways",
        type=ways_list,
        help=f"classes per episode, or a list to sweep: 5,10,20 (default: {DEFAULT_WAYS})",
    )
    episodes.add_argument(
        "--shots",
        type=shots_list,
        help=f"shots per class, or one per way: 1,5,10 (default: {DEFAULT_SHOTS})",
    )
    episodes.add_argument(
        "--queries",
        type=positive_int,
        default=_default("queries"),
        help="query images per class, protocols fixed and many-way (default: "
        f"{_default('queries')})",
    )
    episodes.add_argument(
        "--episodes",
        type=positive_int,
        default=_default("episodes"),
        help=f"episodes per setting (default: {_default('episodes')})",
    )
    episodes.add_argument(
        "--seed",
        type=int,
        default=_default("seed"),
        help=f"seed of episodes and fine-tuning (default: {_default('seed')})",
    )
    _add_protocol_options(evaluate)
    _add_speed_options(evaluate)
    add_method_options(evaluate)
    add_backbone_options(evaluate, embedding=True)
    add_run_options(evaluate, quiet="no progress bar")
    evaluate.add_argument("--output", type=output_file, required=True, help="results JSON file")
    evaluate.set_defaults(run=run_evaluate)


def _add_protocol_options(parser: argparse.ArgumentParser) -> None:
    """``evaluate``'s protocol, sweep, episode-file and hardness options."""
    from anyshot.protocols import PROTOCOLS

    group = parser.add_argument_group("protocol (see 'protocols' below)")
    group.add_argument(
        "--protocol", choices=PROTOCOLS, help="how episodes are drawn (default: fixed)"
    )
    group.add_argument(
        "--total-queries",
        type=positive_int,
        default=_default("total_queries"),
        help="imbalanced, present-classes: queries per episode (default: "
        f"{_default('total_queries')})",
    )
    group.add_argument(
        "--dirichlet-alpha",
        type=positive_float,
        default=_default("dirichlet_alpha"),
        help="imbalanced: Dirichlet concentration; smaller = more imbalanced (default: "
        f"{_default('dirichlet_alpha')})",
    )
    group.add_argument(
        "--present-classes",
        type=positive_int,
        metavar="P",
        help="present-classes (required there): how many of the --ways support classes the "
        "queries come from, 1 <= P <= ways",
    )
    group.add_argument(
        "--inlier-queries",
        type=positive_int,
        default=_default("inlier_queries"),
        help="open-set: queries of the episode's --ways classes per episode, split evenly "
        f"(default: {_default('inlier_queries')})",
    )
    group.add_argument(
        "--outlier-queries",
        type=non_negative_int,
        default=_default("outlier_queries"),
        help="open-set: outlier queries per episode, images of classes other than the "
        "episode's (from the same split, or the same tree with --dataset folder) "
        f"(default: {_default('outlier_queries')})",
    )
    group.add_argument(
        "--outlier-classes",
        type=positive_int,
        default=_default("outlier_classes"),
        help="open-set: classes (none of the support's) the outliers come from per episode, "
        f"split evenly (default: {_default('outlier_classes')})",
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
        type=positive_int,
        help="input size of the hardness model (default: --image-size, else "
        f"{INPUT_SPECS[HARDNESS_ARCH].image_size})",
    )


def _add_speed_options(parser: argparse.ArgumentParser) -> None:
    """``evaluate``'s speed options: ``--cache-dir``, ``--cache-dtype`` and ``--workers``."""
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
        default=_default("cache_dtype"),
        help="precision of the cached forward pass: auto = bfloat16 on a CPU with native "
        "bfloat16 instructions (AVX512-BF16 / AMX; measured ~3.5x the images/s of float32 on "
        "a 2-core AVX512-BF16 CPU, accuracy unchanged within noise: BENCHMARKS.md), float32 "
        f"elsewhere (default: {_default('cache_dtype')})",
    )
    group.add_argument(
        "--workers",
        type=positive_int,
        default=_default("workers"),
        metavar="N",
        help="processes to share the episodes (episode i goes to worker i %% N; results are "
        "identical to one process apart from seconds); each uses max(1, CPUs / N) torch "
        "threads unless --threads is given. Under 'torchrun --nproc-per-node N -m anyshot "
        "evaluate ...' the N torchrun processes are the workers (default: "
        f"{_default('workers')})",
    )


def config_from_args(args: argparse.Namespace) -> EvaluationConfig:
    """The :class:`~anyshot.evaluation.run.EvaluationConfig` the parsed arguments describe."""
    from anyshot.evaluation.run import EvaluationConfig

    method = method_from_args(args)
    assert not isinstance(method, ScopeRule)  # evaluate has no --scope auto
    return EvaluationConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        split=args.split,
        method=method,
        ways=args.ways,
        shots=args.shots,
        sweep=args.sweep,
        queries=args.queries,
        episodes=args.episodes,
        protocol=args.protocol,
        total_queries=args.total_queries,
        inlier_queries=args.inlier_queries,
        outlier_queries=args.outlier_queries,
        outlier_classes=args.outlier_classes,
        dirichlet_alpha=args.dirichlet_alpha,
        present_classes=args.present_classes,
        episodes_file=args.episodes_file,
        save_episodes=args.save_episodes,
        seed=args.seed,
        backbone=args.backbone,
        embedding=args.embedding,
        device=args.device,
        batch_size=args.batch_size,
        hardness=args.hardness,
        hardness_image_size=args.hardness_image_size,
        cache_dir=args.cache_dir,
        cache_dtype=args.cache_dtype,
        workers=args.workers,
        threads=args.threads,
        output=args.output,
        **preprocessing_overrides(args),
    )


def run_evaluate(args: argparse.Namespace) -> int:
    """``anyshot evaluate``: run the evaluation; print each setting's summary (stdout) and
    notes (stderr). With ``--workers N`` (or under ``torchrun``) only the first process prints.
    """
    from anyshot.evaluation.cached import supports_cached
    from anyshot.evaluation.run import EvaluationInterrupted, run_evaluation
    from anyshot.sharding import torchrun_world

    config = config_from_args(args)
    world = torchrun_world()
    main_rank = world is None or world[0] == 0
    if not main_rank:
        args.quiet = True  # one progress bar and one "done in" line, from rank 0
    if config.cache_dir is not None and not supports_cached(config.method) and main_rank:
        print(
            "anyshot: note: --cache-dir is not used: --scope "
            f"{getattr(config.method, 'scope', None)} trains the "
            "backbone, so every episode embeds its own images (cached features work with "
            "support-init and --scope head)",
            file=sys.stderr,
        )
    try:
        run_evaluation(config, show_progress=not args.quiet, log=print, on_result=_print_result)
    except EvaluationInterrupted as stop:
        if stop.saved is not None and stop.partial is not None:
            print(
                f"interrupted: {len(stop.partial.records)} finished episodes saved to {stop.saved}",
                file=sys.stderr,
            )
        elif stop.partial is not None:
            print(
                f"interrupted: {len(stop.partial.records)} episodes had finished (no output file)",
                file=sys.stderr,
            )
        else:  # e.g. while the cache embedded the images: those it finished stay cached
            print("interrupted before any episode finished: no results written", file=sys.stderr)
        return 130
    return 0


def _print_result(result: EvaluationResult, path: Path | None, setting: str | None) -> None:
    """``on_result`` of :func:`run_evaluate` (module level: it travels to spawned workers)."""
    from anyshot.report import method_label

    summary = result.summary
    what = "" if setting is None else f" [{setting}]"
    inliers = "inlier " if "auroc_mean" in summary else ""
    print(
        f"{method_label(result.config)}{what}: {inliers}accuracy "
        f"{100 * summary['accuracy_mean']:.2f}% ± {100 * summary['accuracy_ci95']:.2f} (95% CI), "
        f"std {100 * summary['accuracy_std']:.2f}, {summary['episodes']} episodes, "
        f"{summary['seconds_per_episode_median']:.3f} s/episode (median)"
    )
    if inliers:
        score = str(summary["outlier_score"]).split(":")[0]
        msp = summary.get("msp_auroc_mean")
        print(
            f"outliers (score: {score}): AUROC "
            f"{100 * summary['auroc_mean']:.2f}% ± {100 * summary['auroc_ci95']:.2f}, AUPR "
            f"{100 * summary['aupr_mean']:.2f}% ± {100 * summary['aupr_ci95']:.2f} (95% CI)"
            + ("" if msp is None else f"; the method's MSP: AUROC {100 * msp:.2f}%")
        )
    if "ece" in summary:
        print(
            f"calibration: ECE {100 * summary['ece']:.2f}% over {summary['ece_predictions']} "
            "query predictions (15 bins of max softmax probability"
            + ("; an outlier's prediction counts as wrong)" if inliers else ")")
            + (
                f"; inlier queries alone: ECE {100 * summary['inlier_ece']:.2f}%"
                if "inlier_ece" in summary
                else ""
            )
        )
    print(f"results written to {path}")


# --- report -----------------------------------------------------------------------------------
EPILOG_REPORT = """\
example:
  anyshot report results-*.json --output report/

writes report/report.md, report/report.csv and report/report-hardness.csv, and the plots that
apply, per dataset:
  report/plots/report-hardness-DATASET.png  results with a hardness (evaluate --hardness)
  report/plots/report-ways-DATASET.png      settings at two or more ways (--ways 5,10,20)
  report/plots/report-shots-DATASET.png     settings at two or more shots (--shots 1,5 --sweep)
A plot that does not apply is not drawn; stderr and report.md say which and why.
"""


def _add_report(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="tables (mean, std, 95%% CI, episodes), hardness lines and plots of results files",
        description="Summarise results files of 'anyshot evaluate' (or bundles of them): a "
        "table per dataset with mean accuracy, std across episodes, 95% CI and episode count "
        "per method and setting, as Markdown and CSV; accuracy against episode hardness with a "
        "least-squares line per method and the area under it; accuracy against ways and shots. "
        "Warns when a 95% CI is wider than +-2 points or a many-way setting has fewer than "
        "100 episodes.",
        epilog=EPILOG_REPORT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("results", nargs="+", type=Path, help="results JSON files")
    report.add_argument("--output", type=Path, required=True, help="folder to write into")
    report.add_argument("--name", default="report", help="stem of the files (default: report)")
    report.add_argument("--no-plots", action="store_true", help="tables only")
    report.add_argument(
        "--quiet", action="store_true", help="print only warnings (no file list, no notes)"
    )
    report.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    """``anyshot report``: write the report; warnings and skipped-plot notes go to stderr."""
    from anyshot.report import write_report

    report = write_report(args.results, args.output, name=args.name, plots=not args.no_plots)
    for warning in report.warnings:
        print(f"anyshot: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        for why in report.skipped_plots:
            print(f"anyshot: note: {why}", file=sys.stderr)
        for path in (report.markdown, report.csv, report.hardness_csv, *report.plots):
            print(f"written {path}")
    return 0


# --- demo -------------------------------------------------------------------------------------
def _add_demo(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="a short real evaluation: support-init vs transductive fine-tuning on Omniglot",
        description="Compare support-based initialisation with transductive fine-tuning (head "
        "scope) on 5-way 1-shot Omniglot test episodes, with the offline ImageNet-pretrained "
        "EfficientNet-Lite0 at 84 px. Uses ../shared/data/omniglot when present, else the "
        "small Omniglot sample shipped inside anyshot.",
    )
    demo.add_argument(
        "--episodes",
        type=positive_int,
        default=DEMO_EPISODES,
        help=f"episodes per method (default: {DEMO_EPISODES})",
    )
    demo.add_argument("--data-root", type=Path, help="Omniglot folder (default: see above)")
    demo.add_argument(
        "--output", type=output_file, help="also write both results to this JSON file"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the episodes (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """``anyshot demo``: print the comparison (and write the results with ``--output``)."""
    from anyshot.demo import run_demo as demo

    report = demo(
        episodes=args.episodes,
        data_root=args.data_root,
        seed=args.seed,
        show_progress=not args.quiet,
    )
    print(report.text)
    if args.output:
        from anyshot.io import write_json

        write_json(args.output, report.results)
        print(f"results written to {args.output}")
    return 0
