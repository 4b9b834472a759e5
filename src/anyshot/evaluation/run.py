"""What ``anyshot evaluate`` does, as a library function driven by a config object.

    from pathlib import Path
    from anyshot.evaluation.run import EvaluationConfig, run_evaluation
    from anyshot.methods.presets import SUPPORT_INIT

    config = EvaluationConfig(
        dataset="omniglot", data_root=Path("../shared/data/omniglot"), split="test",
        ways=(5,), shots=(1,), episodes=100, method=SUPPORT_INIT,
        backbone="efficientnet-lite0", image_size=84, output=Path("r.json"),
    )
    (result,) = run_evaluation(config)
    print(result.summary["accuracy_mean"])

Per setting (one ``(ways, shots)`` pair, or the episodes of a file) the episodes are sampled with
``config.seed`` (or read from ``config.episodes_file``), the method runs on each (on cached
embeddings, many same-shaped episodes at once, when ``config.cache_dir`` is set and the method
allows it: :mod:`anyshot.evaluation.cached`), and the result is written to ``config.output``
(``OUTPUT-5w1s.json``, ... for several settings). ``config.workers`` processes (or the
processes of ``torchrun``) share the episodes (:mod:`anyshot.sharding`); the results equal a
single process's apart from seconds. Nothing here prints: messages go to the ``log`` callback.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from anyshot.backbones import Backbone, load_backbone
from anyshot.data import FolderDataset, ImageDataset, load_dataset
from anyshot.episode_files import load_episodes, read_episode_header, save_episodes
from anyshot.episodes import EpisodeSpec, make_episode, spec_query_targets
from anyshot.errors import ConfigurationError, ImageReadError
from anyshot.evaluation.cached import (
    embed_items,
    episode_items,
    evaluate_cached,
    shard_episodes,
    supports_cached,
)
from anyshot.evaluation.loop import evaluate
from anyshot.evaluation.records import EvaluationResult
from anyshot.feature_cache import FeatureCache, fastest_dtype
from anyshot.hardness import HardnessModel
from anyshot.methods.presets import RECOMMENDED, Method
from anyshot.methods.registry import method_name
from anyshot.progress import progress_bar
from anyshot.protocols import build_sampler, sampler_config
from anyshot.sharding import Shard, launch

__all__ = [
    "DEFAULT_SHOTS",
    "DEFAULT_WAYS",
    "EvaluationConfig",
    "EvaluationInterrupted",
    "EvaluationStopped",
    "OnResult",
    "run_evaluation",
]

#: ``on_result(result, path, setting)``: a setting finished; ``path`` is where it was written
#: (``None`` without ``output``), ``setting`` a label such as ``"5-way 1-shot"`` when the run
#: has several settings, else ``None``.
OnResult = Callable[[EvaluationResult, Path | None, str | None], None]

#: Ways and shots of an :class:`EvaluationConfig` that names neither (``ways=None``,
#: ``shots=None``): 5-way 1-shot.
DEFAULT_WAYS = 5
DEFAULT_SHOTS = 1


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything one ``anyshot evaluate`` run needs.

    Attributes:
        dataset: dataset format (:func:`anyshot.data.registry.available_datasets`).
        data_root: the dataset's folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
        method: the method (a preset of :mod:`anyshot.methods.presets`, or any
            :data:`~anyshot.methods.presets.Method`); it carries its own seed.
        ways: classes per episode, one or several (``None`` in it = every class, protocols
            ``many-way`` and ``present-classes``); ``None``: ``(DEFAULT_WAYS,)``.
        shots: shots per class: one count, one per way, or (with ``sweep``) a grid;
            ``None``: ``(DEFAULT_SHOTS,)``.
        sweep: evaluate every ``(ways, shots)`` pair as its own setting (implied by several
            ways).
        queries: queries per class (protocols ``fixed`` and ``many-way``).
        episodes: episodes per setting.
        protocol: ``fixed``, ``many-way``, ``imbalanced``, ``variable``, ``present-classes`` or
            ``open-set`` (``None`` = fixed).
        total_queries: queries per episode of protocols ``imbalanced`` and ``present-classes``.
        dirichlet_alpha: Dirichlet concentration of protocol ``imbalanced``.
        present_classes: protocol ``present-classes`` (required there, refused elsewhere): how
            many of the ``ways`` support classes the queries come from, ``1..ways``.
        inlier_queries: protocol ``open-set``: queries of the episode's classes per episode.
        outlier_queries: protocol ``open-set``: outlier queries per episode (images of other
            classes of the split; their target is :data:`~anyshot.episodes.OUTLIER`).
        outlier_classes: protocol ``open-set``: classes the outliers come from per episode.
        episodes_file: run exactly the episodes of this file (no ways, shots, sweep, protocol
            or ``save_episodes`` then).
        save_episodes: also write the sampled episodes to this ``.jsonl`` file.
        seed: seed of the episodes and of a randomly initialised backbone.
        backbone: architecture name or checkpoint file.
        image_size: the backbone's input side (``None``: its own).
        embedding: ``"features"`` or ``"logits"`` (``None``: the backbone's default).
        device: where to run (``None``: CPU).
        batch_size: images per forward pass.
        hardness: record each episode's hardness (:mod:`anyshot.hardness`).
        hardness_image_size: input side of the hardness model (default ``image_size``, else the
            hardness model's own, :class:`~anyshot.hardness.HardnessModel`).
        cache_dir: embed each image once into this :class:`~anyshot.feature_cache.FeatureCache`
            and run the method on the cached rows; used only when
            :func:`~anyshot.evaluation.cached.supports_cached` holds for ``method``.
        cache_dtype: ``"auto"``, ``"float32"`` or ``"bfloat16"``: precision of the cached
            forward pass (auto: :func:`~anyshot.feature_cache.fastest_dtype`).
        workers: processes sharing the episodes (ignored under ``torchrun``).
        threads: torch threads per worker process (default: CPUs / workers); a single
            in-process run keeps the current setting.
        output: results JSON (a run of several settings writes ``OUTPUT-5w1s.json``, ...);
            ``None``: the results are only returned.
    """

    dataset: str
    data_root: Path
    split: str = "test"
    method: Method = RECOMMENDED
    ways: tuple[int | None, ...] | None = None
    shots: tuple[int, ...] | None = None
    sweep: bool = False
    queries: int = 15
    episodes: int = 100
    protocol: str | None = None
    total_queries: int = 75
    dirichlet_alpha: float = 2.0
    present_classes: int | None = None
    inlier_queries: int = 15
    outlier_queries: int = 15
    outlier_classes: int = 5
    episodes_file: Path | None = None
    save_episodes: Path | None = None
    seed: int = 0
    backbone: str = "efficientnet-lite0"
    image_size: int | None = None
    embedding: str | None = None
    device: str | None = None
    batch_size: int = 64
    hardness: bool = False
    hardness_image_size: int | None = None
    cache_dir: Path | None = None
    cache_dtype: str = "auto"
    workers: int = 1
    threads: int | None = None
    output: Path | None = None

    def __post_init__(self) -> None:
        for name in ("ways", "shots"):  # lists are welcome; store tuples
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        for name in ("data_root", "episodes_file", "save_episodes", "cache_dir", "output"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`run_evaluation`; what finished is kept.

    Attributes:
        results: the settings that finished before.
        partial: the interrupted setting's finished episodes (``config["interrupted"]`` is
            true), or ``None`` when none finished.
        saved: where ``partial`` was written, or ``None``.
    """

    def __init__(
        self,
        results: list[EvaluationResult],
        partial: EvaluationResult | None,
        saved: Path | None,
    ) -> None:
        super().__init__("evaluation interrupted")
        self.results = results
        self.partial = partial
        self.saved = saved


class EvaluationStopped(ImageReadError):
    """An image could not be read part-way through :func:`run_evaluation` (a file cut short,
    removed or replaced during the run); what finished is kept, as on Ctrl-C.

    Attributes:
        results: the settings that finished before.
        partial: the stopped setting's finished episodes (``config["stopped_by"]`` holds the
            error), or ``None`` when none finished.
        saved: where ``partial`` was written, or ``None``.
    """

    def __init__(
        self,
        error: str,
        results: list[EvaluationResult],
        partial: EvaluationResult | None,
        saved: Path | None,
    ) -> None:
        count = 0 if partial is None else len(partial.records)
        episodes = "1 episode" if count == 1 else f"{count} episodes"
        if partial is None:
            kept = "; no episode had finished"
        elif saved is None:
            kept = f"; {episodes} had finished (no output file was given)"
        else:
            kept = f'; what finished ({episodes}) was saved to {saved} (marked "stopped_by")'

        super().__init__(f"{error}{kept}")
        self.results = results
        self.partial = partial
        self.saved = saved


class _Setting(NamedTuple):
    """One setting: ``ways`` (``None`` = every class) and ``shots``; both ``None`` when the
    protocol (or the episode file) chooses them."""

    ways: int | None
    shots: tuple[int, ...] | None

    def label(self) -> str:
        return f"{self.ways or 'all'}-way {self.shots[0] if self.shots else '?'}-shot"

    def suffixed(self, path: Path, many: bool) -> Path:
        """``r.json`` -> ``r-5w1s.json`` when the run has several settings."""
        if not many or self.shots is None:
            return path
        ways = "all" if self.ways is None else self.ways
        return path.with_name(f"{path.stem}-{ways}w{self.shots[0]}s{path.suffix}")


def _settings(config: EvaluationConfig) -> list[_Setting]:
    """The settings ``config`` runs (messages name the command-line flags)."""
    protocol = config.protocol or "fixed"
    explicit = config.ways is not None or config.shots is not None
    ways_values = config.ways if config.ways is not None else (DEFAULT_WAYS,)
    shot_values = config.shots if config.shots is not None else (DEFAULT_SHOTS,)
    sweep = config.sweep or len(ways_values) > 1
    _check_present_classes(config, protocol, ways_values)
    if config.episodes_file is not None:
        if explicit or sweep or config.protocol or config.save_episodes:
            raise ConfigurationError(
                "--episodes-file runs the episodes saved in the file; drop --ways, --shots, "
                "--sweep, --protocol and --save-episodes"
            )
        return [_Setting(None, None)]
    if protocol == "variable":
        if explicit or sweep:
            raise ConfigurationError(
                "--protocol variable draws ways and shots itself; drop --ways, --shots, --sweep"
            )
        return [_Setting(None, None)]
    if sweep:
        return [_Setting(w, (k,)) for w in ways_values for k in shot_values]
    ways = ways_values[0]
    if len(shot_values) == 1 or (ways is not None and len(shot_values) == ways):
        return [_Setting(ways, tuple(shot_values))]
    raise ConfigurationError(
        f"--shots lists {len(shot_values)} counts for {ways if ways else 'all'} ways: give one "
        "count, one count per way, or add --sweep to evaluate each count as its own setting"
    )


def _check_present_classes(
    config: EvaluationConfig, protocol: str, ways_values: Sequence[int | None]
) -> None:
    """``--present-classes``: required by protocol ``present-classes``, refused by the others,
    and between 1 and every ``--ways`` value (``all`` is checked when the split is loaded)."""
    present = config.present_classes
    if protocol != "present-classes":
        if present is not None:
            raise ConfigurationError(
                f"--present-classes is an option of --protocol present-classes, not {protocol!r}"
            )
        return
    if present is None:
        raise ConfigurationError(
            "--protocol present-classes needs --present-classes P: the number of the --ways "
            "support classes the --total-queries queries come from (1 <= P <= ways)"
        )
    too_many = [w for w in ways_values if w is not None and present > w]
    if present < 1 or too_many:
        raise ConfigurationError(
            f"--present-classes must be between 1 and --ways; got {present} with --ways "
            f"{', '.join('all' if w is None else str(w) for w in ways_values)}"
        )
    if present > config.total_queries:
        raise ConfigurationError(
            f"--present-classes {present} needs at least {present} --total-queries (one query "
            f"per present class); got {config.total_queries}"
        )


def run_evaluation(
    config: EvaluationConfig,
    *,
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
    on_result: OnResult | None = None,
) -> list[EvaluationResult]:
    """Evaluate ``config.method`` on every setting of ``config``; one result per setting.

    ``log`` and ``on_result`` run in the first process only; with ``workers > 1`` they must be
    picklable (module-level functions, not lambdas).

    Args:
        config: what to run.
        show_progress: progress bars (on stderr, from the first process only).
        log: receives one-line messages (e.g. where episodes were written).
        on_result: called as each setting finishes (see :data:`OnResult`).

    Returns:
        The results, in setting order (every process of a sharded run returns all of them).

    Raises:
        ConfigurationError: contradicting options (e.g. an episode file and ways).
        EvaluationInterrupted: Ctrl-C; the interrupted setting's finished episodes were
            written to ``config.output`` (marked ``"interrupted"``).
        EvaluationStopped: an image could not be read during the episodes; their finished
            episodes were written to ``config.output`` (marked ``"stopped_by"``: the error).
    """
    _settings(config)  # contradictions fail here, before any process starts
    task = _Task(config, show_progress, log, on_result)
    outcome = launch(_job, task, workers=config.workers, threads=config.threads)
    if outcome.error is not None:
        raise EvaluationStopped(outcome.error, outcome.results, outcome.partial, outcome.saved)
    if outcome.interrupted:
        raise EvaluationInterrupted(outcome.results, outcome.partial, outcome.saved)
    return outcome.results


@dataclass(frozen=True)
class _Task:
    config: EvaluationConfig
    show_progress: bool
    log: Callable[[str], None] | None
    on_result: OnResult | None


@dataclass
class _Outcome:
    """One process's answer (picklable: it travels back from spawned workers)."""

    results: list[EvaluationResult]
    interrupted: bool = False
    partial: EvaluationResult | None = None
    saved: Path | None = None
    error: str | None = None


class _Stopped(Exception):
    """A setting stopped (Ctrl-C, or ``error``: an image that could not be read)."""

    def __init__(
        self, partial: EvaluationResult | None, saved: Path | None, error: str | None
    ) -> None:
        super().__init__(error or "interrupted")
        self.partial = partial
        self.saved = saved
        self.error = error


def _job(task: _Task, shard: Shard) -> _Outcome:
    """One process's part of :func:`run_evaluation`."""
    run = _Run(task, shard)
    settings = _settings(task.config)
    results: list[EvaluationResult] = []
    for setting in settings:
        try:
            results.append(run.setting(setting, many=len(settings) > 1))
        except _Stopped as stop:
            return _Outcome(results, True, stop.partial, stop.saved, stop.error)
    return _Outcome(results)


class _Run:
    """The loaded backbone, dataset, feature cache and hardness model of one process."""

    def __init__(self, task: _Task, shard: Shard) -> None:
        config = self.config = task.config
        self.shard = shard
        self.show_progress = task.show_progress and shard.is_main
        self.log = task.log if shard.is_main else None
        self.on_result = task.on_result if shard.is_main else None
        self.backbone = _backbone(config)
        #: whether the current setting's episodes began (a read error before them is raised)
        self.episodes_started = False
        self.dataset = load_dataset(config.dataset, config.data_root, config.split)
        if isinstance(self.dataset, FolderDataset) and shard.is_main:
            if self.dataset.skipped:
                warnings.warn(_skipped_words(self.dataset), RuntimeWarning, stacklevel=2)
            if self.dataset.duplicates:
                warnings.warn(_duplicate_words(self.dataset), RuntimeWarning, stacklevel=2)
        self.cache: FeatureCache | None = None
        if config.cache_dir is not None and supports_cached(config.method):
            dtype = config.cache_dtype
            self.cache = FeatureCache(
                config.cache_dir, dtype=fastest_dtype(config.device) if dtype == "auto" else dtype
            )
        self.hardness: HardnessModel | None = None
        if config.hardness:
            self.hardness = HardnessModel(
                self.dataset,
                image_size=config.hardness_image_size or config.image_size,
                batch_size=config.batch_size,
                device=config.device,
            )

    def setting(self, setting: _Setting, *, many: bool) -> EvaluationResult:
        """Evaluate one setting, gather every process's records, write the result."""
        config, shard = self.config, self.shard
        specs, protocol = self.specs(setting, many)
        output = None if config.output is None else setting.suffixed(config.output, many)
        base = self.result_config(protocol, len(specs))
        records: list[dict[str, Any]] = []
        stopped: tuple[str, str] | None = None  # ("interrupted", "") or ("error", message)
        self.episodes_started = False
        try:
            if self.cache is not None:
                done = self.cached(specs, base, records)
            else:
                done = self.plain(specs, base, records)
        except KeyboardInterrupt:
            stopped, done = ("interrupted", ""), None
        except OSError as error:  # an image cut short, removed or replaced during the run
            if not self.episodes_started:  # the cache's embedding: the processes share a barrier
                raise
            message = str(error).rstrip(". ") or type(error).__name__
            stopped, done = ("error", message + self.other_unreadable(specs, records, error)), None
        gathered = shard.all_gather((records, done.config if done else base, stopped))
        records = sorted((r for part, _, _ in gathered for r in part), key=lambda r: r["index"])
        result = EvaluationResult(records=records, config=gathered[0][1])
        reasons = [reason for _, _, reason in gathered if reason is not None]
        if reasons:
            errors = [message for kind, message in reasons if kind == "error"]
            self.stop(result, output, errors[0] if errors else None)  # an error outranks Ctrl-C
        if output is not None and shard.is_main:
            result.save(output)
        if self.on_result is not None:
            self.on_result(result, output, setting.label() if many else None)
        return result

    def other_unreadable(
        self, specs: list[EpisodeSpec], records: list[dict[str, Any]], error: OSError
    ) -> str:
        """After a read error in this process's episodes: the other images of its unfinished
        episodes that cannot be read either (each decoded once), in words, so that one run
        names every file to fix; ``""`` when there are none."""
        done = {int(r["index"]) for r in records}
        left = [specs[i] for i in self.shard.indices(len(specs)) if i not in done]
        items = sorted(set(episode_items(left)))
        bad = []
        for item in progress_bar(
            items, desc="checking the other images", enabled=self.show_progress, unit="image"
        ):
            try:
                self.dataset.load(item, self.backbone.preprocessing)
            except OSError:
                source = self.dataset.source(item)
                if source not in str(error):
                    bad.append(source)
        if not bad:
            return ""
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        return f"; {len(bad)} more of the run's images cannot be read either: {shown}"

    def stop(self, result: EvaluationResult, output: Path | None, error: str | None) -> None:
        """Save the finished episodes of a setting stopped by Ctrl-C (``error`` ``None``) or by
        an unreadable image (first process), then stop."""
        if not result.records:
            raise _Stopped(None, None, error)
        if error is None:
            result.config["interrupted"] = True
        else:
            result.config["stopped_by"] = error
        if output is not None and self.shard.is_main:
            result.save(output)
            raise _Stopped(result, output, error)
        raise _Stopped(result, None, error)

    def specs(self, setting: _Setting, many: bool) -> tuple[list[EpisodeSpec], dict[str, Any]]:
        """The setting's episodes and their protocol fields (for the result's config)."""
        config = self.config
        if config.episodes_file is not None:
            specs = load_episodes(config.episodes_file, self.dataset)
            protocol = _from_file_config(specs, read_episode_header(config.episodes_file))
            protocol["episodes_file"] = str(config.episodes_file)
            return specs, protocol
        shots = setting.shots
        sampler = build_sampler(
            config.protocol or "fixed",
            self.dataset.labels,
            ways=setting.ways,
            shots=(shots[0] if len(shots) == 1 else list(shots)) if shots else 1,
            queries=config.queries,
            total_queries=config.total_queries,
            dirichlet_alpha=config.dirichlet_alpha,
            present_classes=config.present_classes,
            inlier_queries=config.inlier_queries,
            outlier_queries=config.outlier_queries,
            outlier_classes=config.outlier_classes,
            seed=config.seed,
        )
        specs = list(sampler.take(config.episodes))
        protocol = sampler_config(sampler)
        if (config.protocol or "fixed") == "fixed" and shots and self.shard.is_main:
            self.warn_small_classes(max(shots) + config.queries)
        if config.save_episodes is not None and self.shard.is_main:
            path = save_episodes(
                setting.suffixed(config.save_episodes, many),
                self.dataset,
                specs,
                header={
                    **protocol,
                    "dataset": config.dataset,
                    "split": _split_of(self.dataset, config.split),
                },
            )
            if self.log is not None:
                self.log(f"episodes written to {path}")
        return specs, protocol

    def warn_small_classes(self, need: int) -> None:
        """Warn, for a user's class tree, of the classes the fixed protocol never draws:
        fewer than ``need`` (shots + queries) images."""
        if not isinstance(self.dataset, FolderDataset):
            return
        counts = self.dataset.class_counts()
        names = self.dataset.class_names
        small = [(name, int(n)) for name, n in zip(names, counts, strict=True) if n < need]
        if small:
            listed = ", ".join(f"{name} ({n})" for name, n in small[:10])
            more = f" and {len(small) - 10} more" if len(small) > 10 else ""
            warnings.warn(
                f"{len(small)} class folder(s) hold fewer than the {need} images an episode "
                f"takes from a class (shots + queries) and are in no episode: {listed}{more}",
                RuntimeWarning,
                stacklevel=2,
            )

    def result_config(self, protocol: dict[str, Any], episodes: int) -> dict[str, Any]:
        """What the results file says was run."""
        config = self.config
        result: dict[str, Any] = {
            "command": "evaluate",
            "dataset": config.dataset,
            "data_root": str(config.data_root),
            "split": _split_of(self.dataset, config.split),
            **protocol,
            "episodes": episodes,
            "seed": config.seed,
            "method": method_name(config.method),
            "method_options": dataclasses.asdict(config.method),
            "backbone": config.backbone,
            "preprocessing": self.backbone.preprocessing.to_dict(),
        }
        if self.hardness is not None:
            result["hardness"] = self.hardness.config()
        if self.cache is not None:
            result["feature_cache"] = str(config.cache_dir)
            result["feature_cache_dtype"] = self.cache.dtype
        if self.shard.world_size > 1:
            result["workers"] = self.shard.world_size
        return result

    def cached(
        self, specs: list[EpisodeSpec], config: dict[str, Any], records: list[dict[str, Any]]
    ) -> EvaluationResult | None:
        """This process's episodes on cached embeddings: whole batches per process, so the
        logits are bitwise those of a single process."""
        assert self.cache is not None
        shard, batch_size = self.shard, self.config.batch_size
        mine = shard_episodes(specs, shard.rank, shard.world_size)
        everything = episode_items(specs)  # the processes share the embedding
        self.cache.features(
            self.backbone,
            self.dataset,
            everything[shard.rank :: shard.world_size],
            batch_size=batch_size,
            show_progress=self.show_progress,
            desc=self.share("embedding"),
        )
        shard.barrier()
        self.episodes_started = True  # hardness may still read images, episode by episode
        if not mine:
            return None
        features = embed_items(
            self.cache,
            self.backbone,
            self.dataset,
            episode_items(specs[i] for i in mine),
            batch_size=batch_size,
        )
        return evaluate_cached(
            self.config.method,
            features,
            specs,
            indices=mine,
            config=config,
            show_progress=self.show_progress,
            on_record=records.append,
            hardness=_hardness(self.hardness, specs),
            progress_desc=self.share("episodes"),
        )

    def plain(
        self, specs: list[EpisodeSpec], config: dict[str, Any], records: list[dict[str, Any]]
    ) -> EvaluationResult | None:
        """This process's episodes (every ``world_size``-th), each embedding its own images."""
        mine = self.shard.indices(len(specs))
        self.episodes_started = True
        if not mine:
            return None
        preprocessing = self.backbone.preprocessing
        of_spec = _hardness(self.hardness, specs)

        def keep(record: dict[str, Any]) -> None:  # index: the position in all the episodes
            record["index"] = mine[record["index"]]
            records.append(record)

        def hardness(local: int, _episode: object) -> float:
            assert of_spec is not None
            return of_spec(mine[local])

        def targets(local: int, _episode: object) -> torch.Tensor:  # outliers have no label
            return spec_query_targets(specs[mine[local]])

        return evaluate(
            self.config.method,
            self.backbone,
            (make_episode(self.dataset, specs[i], preprocessing) for i in mine),
            total=len(mine),
            config=config,
            show_progress=self.show_progress,
            on_record=keep,
            hardness=None if of_spec is None else hardness,
            targets=targets,
            progress_desc=self.share("episodes"),
        )

    def share(self, noun: str) -> str:
        """A progress bar's label: ``noun``; with several processes, saying that the bar (drawn
        by the first process) counts that process's share only."""
        world = self.shard.world_size
        return noun if world == 1 else f"{noun} (process 1 of {world}: its share)"


def _backbone(config: EvaluationConfig) -> Backbone:
    overrides = {"embedding": config.embedding} if config.embedding else {}
    with torch.random.fork_rng():  # a randomly initialised backbone depends on the seed only
        torch.manual_seed(config.seed)
        backbone = load_backbone(config.backbone, image_size=config.image_size, **overrides)
    if config.device:
        backbone = backbone.to(config.device)
    return backbone


def _hardness(
    model: HardnessModel | None, specs: Sequence[EpisodeSpec]
) -> Callable[[int], float] | None:
    """``index -> Omega`` of ``specs[index]``, or ``None`` without a hardness model."""
    if model is None:
        return None
    return lambda index: float(model(specs[index]))


def _from_file_config(specs: Sequence[EpisodeSpec], header: dict[str, Any]) -> dict[str, Any]:
    """Protocol fields for results run from an episode file (its header, else the specs)."""
    saved = dict(header.get("header") or {})
    if "protocol" in saved:
        return saved
    ways = {len(s.classes) for s in specs}
    shots = {k for s in specs for k in s.shots}
    queries = {len(q) for s in specs for q in s.query}
    return {
        "protocol": "fixed",
        "ways": _single(ways),
        "shots": None if len(shots) != 1 else [shots.pop()],
        "queries": _single(queries),
    }


def _single(values: Iterable[int]) -> int | None:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _skipped_words(dataset: FolderDataset, listed: int = 5) -> str:
    """The files and class folders a class-folder tree left out and why, in words (the first
    ``listed`` named)."""
    reasons = dataset.skip_reasons
    classes = [path for path in dataset.skipped if reasons[path].endswith("class left out")]
    files = [path for path in dataset.skipped if path not in classes]
    parts = []
    for paths, noun in ((files, "file"), (classes, "class folder")):
        if paths:
            shown = "; ".join(f"{path} ({reasons[path]})" for path in paths[:listed])
            more = f"; and {len(paths) - listed} more" if len(paths) > listed else ""
            count = f"1 {noun}" if len(paths) == 1 else f"{len(paths)} {noun}s"
            parts.append(f"{count}: {shown}{more}")
    return f"skipped in {str(dataset.root)!r}: " + "; ".join(parts)


def _duplicate_words(dataset: FolderDataset, listed: int = 3) -> str:
    """The groups of identical files in different classes, in words (the first ``listed``)."""
    groups = dataset.duplicates
    shown = "; ".join(group.describe() for group in groups[:listed])
    more = f"; and {len(groups) - listed} more groups" if len(groups) > listed else ""
    return (
        f"identical files in different classes of {str(dataset.root)!r} (each copy keeps its "
        f"folder's class: the same image under two labels): {shown}{more}"
    )


def _split_of(dataset: ImageDataset, split: str) -> str | None:
    """The split the episodes were drawn from: ``split``, or ``None`` for a class-folder tree
    without splits (every class of it)."""
    return dataset.split if isinstance(dataset, FolderDataset) else split
