"""Samplers of every protocol, the episode file format, and evaluate's protocol options."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from anyshot.cli import main
from anyshot.data.dataset import ImageDataset
from anyshot.data.omniglot import Omniglot, sample_root
from anyshot.episode_files import image_ids, load_episodes, read_episode_header, save_episodes
from anyshot.episodes import EpisodeSampler, EpisodeSpec
from anyshot.errors import ConfigurationError, DatasetError, EpisodeFileError
from anyshot.protocols import (
    FixedSampler,
    ImbalancedQuerySampler,
    ManyWaySampler,
    PresentClassesSampler,
    VariableSampler,
    apportion,
    build_sampler,
    sampler_config,
)


def labels_with_counts(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def check_items(spec: EpisodeSpec, labels: np.ndarray) -> None:
    """Every item belongs to its way's class, no item twice, classes distinct."""
    assert len(set(spec.classes)) == len(spec.classes)
    seen: set[int] = set()
    for cls, support, query in zip(spec.classes, spec.support, spec.query, strict=True):
        for item in (*support, *query):
            assert labels[item] == cls
            assert item not in seen
            seen.add(item)


# --- fixed and many-way ---------------------------------------------------------------------


def test_fixed_sampler_is_the_episode_sampler_with_per_way_shots() -> None:
    labels = labels_with_counts([12] * 8)
    sampler = build_sampler("fixed", labels, ways=3, shots=[1, 2, 5], queries=4, seed=3)
    assert isinstance(sampler, EpisodeSampler) and FixedSampler is EpisodeSampler
    spec = sampler.sample(7)
    assert spec.shots == (1, 2, 5) and [len(q) for q in spec.query] == [4, 4, 4]
    check_items(spec, labels)
    assert sampler_config(sampler) == {
        "protocol": "fixed",
        "ways": 3,
        "shots": [1, 2, 5],
        "queries": 4,
        "seed": 3,
    }


def test_many_way_takes_every_eligible_class() -> None:
    labels = labels_with_counts([6] * 30 + [3] * 5)  # the last 5 classes are too small
    sampler = ManyWaySampler(labels, ways=None, shots=1, queries=5, seed=0)
    assert sampler.ways == 30
    spec = sampler.sample(0)
    assert sorted(spec.classes) == list(range(30))
    assert all(len(s) == 1 for s in spec.support) and all(len(q) == 5 for q in spec.query)
    check_items(spec, labels)
    assert spec != sampler.sample(1)  # a different seeded order and different images
    assert sampler_config(sampler)["protocol"] == "many-way"
    assert build_sampler("many-way", labels, ways=None, shots=1, queries=5).sample(0) == spec
    with pytest.raises(DatasetError):
        ManyWaySampler(labels, ways=31, shots=1, queries=5)
    with pytest.raises(ConfigurationError, match="many-way"):
        build_sampler("fixed", labels, ways=None, shots=1, queries=5)
    with pytest.raises(ConfigurationError, match="unknown protocol"):
        build_sampler("random", labels)


# --- variable (Meta-Dataset) ----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=2, max_value=300), min_size=5, max_size=70),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    index=st.integers(min_value=0, max_value=10**6),
)
def test_variable_sampler_invariants(counts: list[int], seed: int, index: int) -> None:
    labels = labels_with_counts(counts)
    sampler = VariableSampler(labels, seed=seed)
    spec = sampler.sample(index)
    ways = len(spec.classes)
    assert 5 <= ways <= min(50, len(counts))
    check_items(spec, labels)
    sizes = [counts[c] for c in spec.classes]
    queries = {len(q) for q in spec.query}
    assert len(queries) == 1  # the same query count for every class
    q = queries.pop()
    assert q == min(10, min(sizes) // 2) and 1 <= q <= 10
    assert all(1 <= k <= n - q for k, n in zip(spec.shots, sizes, strict=True))
    assert ways <= sum(spec.shots) <= 500
    assert spec == VariableSampler(labels, seed=seed).sample(index)


def test_variable_sampler_bounds_over_many_draws() -> None:
    rng = np.random.default_rng(0)
    labels = labels_with_counts(rng.integers(20, 700, size=120).tolist())
    specs = list(VariableSampler(labels, seed=1).take(300))
    ways = [len(s.classes) for s in specs]
    totals = [sum(s.shots) for s in specs]
    assert min(ways) >= 5 and max(ways) <= 50
    assert min(ways) <= 8 and max(ways) >= 45  # the whole range is visited
    assert 480 <= max(totals) <= 500  # the cap binds (per-class floors keep it just under)
    assert min(min(s.shots) for s in specs) >= 1
    assert max(len(q) for s in specs for q in s.query) <= 10
    assert len({s.shots for s in specs}) == len(specs)  # shots vary from episode to episode


def test_variable_sampler_needs_five_classes_with_two_images() -> None:
    with pytest.raises(DatasetError, match="at least 5 classes with 2 or more images"):
        VariableSampler(labels_with_counts([10, 10, 10, 10, 1]))


# --- imbalanced queries ---------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=3, max_value=40), min_size=5, max_size=20),
    ways=st.integers(min_value=2, max_value=5),
    shots=st.integers(min_value=1, max_value=2),
    total=st.integers(min_value=1, max_value=60),
    alpha=st.sampled_from([0.1, 0.5, 2.0, 100.0]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    index=st.integers(min_value=0, max_value=10**6),
)
def test_dirichlet_query_counts(counts, ways, shots, total, alpha, seed, index) -> None:
    labels = labels_with_counts(counts)
    capacity = sum(sorted(c - shots for c in counts)[:ways])
    if capacity < total:
        with pytest.raises(DatasetError, match="do not fit"):
            ImbalancedQuerySampler(labels, ways=ways, shots=shots, total_queries=total)
        return
    sampler = ImbalancedQuerySampler(
        labels, ways=ways, shots=shots, total_queries=total, alpha=alpha, seed=seed
    )
    spec = sampler.sample(index)
    check_items(spec, labels)
    assert spec.shots == (shots,) * ways
    query_counts = [len(q) for q in spec.query]
    assert sum(query_counts) == total
    assert all(m <= counts[c] - shots for c, m in zip(spec.classes, query_counts, strict=True))
    again = ImbalancedQuerySampler(
        labels, ways=ways, shots=shots, total_queries=total, alpha=alpha, seed=seed
    )
    assert again.sample(index) == spec


def test_dirichlet_alpha_controls_imbalance() -> None:
    labels = labels_with_counts([100] * 10)

    def spread(alpha: float) -> float:
        sampler = ImbalancedQuerySampler(labels, ways=5, shots=1, alpha=alpha, seed=0)
        return float(np.mean([np.std([len(q) for q in s.query]) for s in sampler.take(50)]))

    assert spread(0.5) > spread(2.0) > spread(1000.0)
    assert spread(1000.0) < 0.5  # balanced: 15 queries per class


def test_apportion_is_largest_remainder() -> None:
    assert apportion(10, np.array([0.5, 0.3, 0.2])).tolist() == [5, 3, 2]
    assert apportion(10, np.array([1.0, 1.0, 1.0])).tolist() == [4, 3, 3]  # ties: lower index
    assert apportion(7, np.array([0.05, 0.15, 0.8])).tolist() == [0, 1, 6]  # 0.35, 1.05, 5.6
    assert apportion(0, np.array([0.2, 0.8])).tolist() == [0, 0]


def test_min_queries_gives_every_class_some() -> None:
    sampler = ImbalancedQuerySampler(
        labels_with_counts([30] * 6), ways=5, shots=1, alpha=0.1, min_queries=2, seed=4
    )
    for spec in sampler.take(20):
        assert min(len(q) for q in spec.query) >= 2 and sum(len(q) for q in spec.query) == 75
    assert sampler_config(sampler)["dirichlet_alpha"] == 0.1


# --- present classes (PADDLE's realistic query sets) ----------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=1, max_value=40), min_size=3, max_size=25),
    ways=st.integers(min_value=1, max_value=12),
    shots=st.integers(min_value=1, max_value=3),
    present=st.integers(min_value=1, max_value=6),
    total=st.integers(min_value=1, max_value=60),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    index=st.integers(min_value=0, max_value=10**6),
)
def test_present_classes_invariants(counts, ways, shots, present, total, seed, index) -> None:
    labels = labels_with_counts(counts)
    options = dict(ways=ways, shots=shots, present=present, total_queries=total, seed=seed)
    if present > ways or total < present:
        with pytest.raises(ValueError, match=r"present|at least"):
            PresentClassesSampler(labels, **options)
        return
    eligible = sorted(c for c in counts if c >= shots + 1)
    if len(eligible) < ways:
        with pytest.raises(DatasetError, match="only"):
            PresentClassesSampler(labels, **options)
        return
    if sum(c - shots for c in eligible[:present]) < total:
        with pytest.raises(DatasetError, match="do not fit"):
            PresentClassesSampler(labels, **options)
        return
    sampler = PresentClassesSampler(labels, **options)
    spec = sampler.sample(index)
    check_items(spec, labels)
    # exactly K support classes, each with its shots
    assert len(spec.classes) == ways and spec.shots == (shots,) * ways
    # queries from exactly `present` of them, T in all, none beyond what a class has left
    query_counts = [len(q) for q in spec.query]
    assert sum(1 for m in query_counts if m > 0) == present
    assert sum(query_counts) == total
    assert all(m <= counts[c] - shots for c, m in zip(spec.classes, query_counts, strict=True))
    capacities = [counts[c] - shots for c, m in zip(spec.classes, query_counts, strict=True) if m]
    shares = [m for m in query_counts if m]
    if min(capacities) >= -(-total // present):  # no cap binds: an even split
        assert max(shares) - min(shares) <= 1
    assert PresentClassesSampler(labels, **options).sample(index) == spec  # seeded


def test_present_classes_even_split_and_reproducibility() -> None:
    labels = labels_with_counts([600] * 20)
    sampler = build_sampler(
        "present-classes", labels, ways=16, shots=5, total_queries=75, present_classes=2, seed=7
    )
    assert isinstance(sampler, PresentClassesSampler)
    specs = list(sampler.take(30))
    for spec in specs:
        check_items(spec, labels)
        assert len(spec.classes) == 16 and spec.shots == (5,) * 16
        assert sorted(len(q) for q in spec.query if q) == [37, 38]  # 75 over 2, one extra
    assert len({s.classes for s in specs}) == 30  # the support classes change per episode
    present_sets = {
        frozenset(c for c, q in zip(s.classes, s.query, strict=True) if q) for s in specs
    }
    assert len(present_sets) > 20  # and so do the present ones
    assert specs == list(
        PresentClassesSampler(labels, ways=16, shots=5, present=2, seed=7).take(30)
    )
    assert specs != list(
        PresentClassesSampler(labels, ways=16, shots=5, present=2, seed=8).take(30)
    )
    assert sampler_config(sampler) == {
        "protocol": "present-classes",
        "ways": 16,
        "shots": [5] * 16,
        "present_classes": 2,
        "total_queries": 75,
        "seed": 7,
    }


def test_present_classes_every_class_and_shortfall() -> None:
    # class 0 has 8 images: 7 left after 1 shot, less than its share of 75 / 5 = 15
    labels = labels_with_counts([8] + [30] * 29 + [1] * 3)  # the last 3 cannot give a query
    sampler = PresentClassesSampler(labels, ways=None, shots=1, present=5, total_queries=75)
    assert sampler.ways == 30
    short = 0
    for spec in sampler.take(40):
        assert sorted(spec.classes) == list(range(30))
        counts = dict(zip(spec.classes, (len(q) for q in spec.query), strict=True))
        assert sum(counts.values()) == 75 and sum(1 for m in counts.values() if m) == 5
        if counts[0]:  # it gives all it has; the others make up the 8 missing, 2 each
            short += 1
            assert counts[0] == 7
            assert sorted(m for m in counts.values() if m)[1:] == [17] * 4
        else:
            assert sorted(m for m in counts.values() if m) == [15] * 5
    assert short > 0


def test_present_classes_errors() -> None:
    labels = labels_with_counts([20] * 30)
    with pytest.raises(DatasetError, match=r"do not fit.*at most 15"):
        PresentClassesSampler(labels, ways=20, shots=5, present=1, total_queries=75)
    PresentClassesSampler(labels, ways=20, shots=5, present=5, total_queries=75)  # 15 each fit
    with pytest.raises(DatasetError, match="need 20 classes with at least 21 images"):
        PresentClassesSampler(labels, ways=20, shots=20, present=1, total_queries=1)
    with pytest.raises(DatasetError, match="only 30 of 30"):
        PresentClassesSampler(labels, ways=31, shots=1, present=1)
    with pytest.raises(ValueError, match="between 1 and the 5 ways"):
        PresentClassesSampler(labels, ways=5, shots=1, present=6)
    with pytest.raises(ValueError, match="between 1 and"):
        PresentClassesSampler(labels, ways=5, shots=1, present=0)
    with pytest.raises(ValueError, match="at least the 3 present"):
        PresentClassesSampler(labels, ways=5, shots=1, present=3, total_queries=2)
    with pytest.raises(ConfigurationError, match="needs present_classes"):
        build_sampler("present-classes", labels, ways=5)
    with pytest.raises(ConfigurationError, match="only it takes them"):
        build_sampler("imbalanced", labels, ways=5, present_classes=2)
    with pytest.raises(ConfigurationError, match="between 1 and --ways"):
        build_sampler("present-classes", labels, ways=5, present_classes=6)


# --- episode files --------------------------------------------------------------------------


class NamedItems(ImageDataset):
    """Items with path-like sources ``ROOT/<class>/imgNNN.png``; pixels are never read."""

    def __init__(self, root: str, counts: list[int], names: list[str] | None = None) -> None:
        names = names or [f"class{k}" for k in range(len(counts))]
        super().__init__(names, labels_with_counts(counts))
        self.root = root
        self.files = [
            f"{root}/{names[k]}/img{j:03d}.png" for k, n in enumerate(counts) for j in range(n)
        ]

    def source(self, index: int) -> str:
        return self.files[self.check_index(index)]

    def image(self, index: int) -> Image.Image:  # pragma: no cover - not used
        raise AssertionError("pixels are not needed")


def test_episode_file_round_trip_across_roots(tmp_path: Path) -> None:
    written_on = NamedItems("/data/machine-a/set", [8] * 6)
    specs = list(
        ImbalancedQuerySampler(written_on.labels, ways=3, shots=2, total_queries=9, seed=5).take(4)
    )
    path = save_episodes(tmp_path / "eps.jsonl", written_on, specs, header={"protocol": "x"})
    lines = path.read_text().splitlines()
    assert len(lines) == 5
    first = json.loads(lines[1])
    assert first["index"] == 0 and first["classes"][0].startswith("class")
    assert first["support"][0][0].startswith("class")  # ids are relative to the common root
    header = read_episode_header(path)
    assert header["episodes"] == 4 and header["header"] == {"protocol": "x"}
    assert header["dataset"]["id_prefix"] == "/data/machine-a/set/"
    # the same images elsewhere resolve to the same items
    assert load_episodes(path, NamedItems("/elsewhere", [8] * 6)) == specs
    # so do they in a dataset with only the classes used (another common folder, other indices)
    used = sorted({c for s in specs for c in s.classes})
    subset = NamedItems("/x", [8] * len(used), names=[f"class{c}" for c in used])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fingerprint differs: fewer items
        loaded = load_episodes(path, subset)
    for original, again in zip(specs, loaded, strict=True):
        assert [subset.source(i) for w in again.support for i in w] == [
            written_on.source(i).replace("/data/machine-a/set", "/x")
            for w in original.support
            for i in w
        ]


def test_episode_file_round_trip_of_present_classes(tmp_path: Path) -> None:
    dataset = NamedItems("/data/a", [12] * 10)
    sampler = PresentClassesSampler(dataset.labels, ways=8, shots=2, present=3, total_queries=10)
    specs = list(sampler.take(5))
    assert all(sum(1 for q in s.query if q) == 3 for s in specs)  # ways without queries
    path = save_episodes(tmp_path / "p.jsonl", dataset, specs, header=sampler.config())
    assert load_episodes(path, NamedItems("/elsewhere", [12] * 10)) == specs
    assert read_episode_header(path)["header"]["present_classes"] == 3


def test_episode_file_round_trip_on_omniglot_zip_sources(tmp_path: Path) -> None:
    dataset = Omniglot(sample_root(), "test")
    specs = list(VariableSampler(dataset.labels, seed=2).take(3))
    path = save_episodes(tmp_path / "o.jsonl", dataset, specs)
    assert load_episodes(path, dataset) == specs
    assert image_ids(dataset).ids[0].endswith("@rot000") or "@rot" in image_ids(dataset).ids[0]


def test_episode_file_errors_are_clear(tmp_path: Path) -> None:
    dataset = NamedItems("/d", [6] * 4)
    specs = list(EpisodeSampler(dataset.labels, ways=2, shots=1, queries=2, seed=0).take(2))
    path = save_episodes(tmp_path / "e.jsonl", dataset, specs)
    lines = path.read_text().splitlines()

    def write(name: str, content: list[str]) -> Path:
        target = tmp_path / name
        target.write_text("\n".join(content) + "\n")
        return target

    entry = json.loads(lines[1])
    entry["query"][0][0] = "class9/nope.png"
    bad = write("bad-id.jsonl", [lines[0], json.dumps(entry), lines[2]])
    with pytest.raises(EpisodeFileError, match=r"line 2: image id 'class9/nope.png' is not in"):
        load_episodes(bad, dataset)

    entry = json.loads(lines[1])
    entry["support"][0], entry["support"][1] = entry["support"][1], entry["support"][0]
    with pytest.raises(EpisodeFileError, match="filed under class"):
        load_episodes(write("swap.jsonl", [lines[0], json.dumps(entry), lines[2]]), dataset)

    entry = json.loads(lines[1])
    entry["query"][0][0] = entry["support"][0][0]
    with pytest.raises(EpisodeFileError, match="appears twice"):
        load_episodes(write("dup.jsonl", [lines[0], json.dumps(entry), lines[2]]), dataset)

    with pytest.raises(EpisodeFileError, match="announces 2 episodes but holds 1"):
        load_episodes(write("short.jsonl", lines[:2]), dataset)
    with pytest.raises(EpisodeFileError, match="not an anyshot episode file"):
        load_episodes(write("plain.jsonl", lines[1:]), dataset)
    with pytest.raises(EpisodeFileError, match=r"class 'class\d' is not a class"):
        load_episodes(path, NamedItems("/d", [6]))

    bigger = NamedItems("/d", [6] * 4 + [3])  # same ids plus a new class: resolves, but warns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_episodes(path, bigger) == specs
    assert any("fingerprint differs" in str(w.message) for w in caught)


# --- the evaluate command's protocol options ------------------------------------------------


def run_cli(tmp_path: Path, *extra: str) -> int:
    return main(
        [
            "evaluate",
            "--dataset",
            "omniglot",
            "--data-root",
            str(sample_root()),
            "--method",
            "support-init",
            "--backbone",
            "conv4",
            "--image-size",
            "28",
            "--episodes",
            "3",
            "--queries",
            "2",
            "--quiet",
            *extra,
        ]
    )


def test_cli_sweep_writes_one_file_per_setting_and_replays_episode_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert (
        run_cli(
            tmp_path,
            "--ways",
            "2,3",
            "--shots",
            "1,2",
            "--output",
            str(out),
            "--save-episodes",
            str(tmp_path / "e.jsonl"),
        )
        == 0
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "e-2w1s.jsonl",
        "e-2w2s.jsonl",
        "e-3w1s.jsonl",
        "e-3w2s.jsonl",
        "r-2w1s.json",
        "r-2w2s.json",
        "r-3w1s.json",
        "r-3w2s.json",
    ]
    swept = json.loads((tmp_path / "r-3w2s.json").read_text())
    assert swept["config"]["ways"] == 3 and swept["config"]["shots"] == [2, 2, 2]
    assert [e["shots"] for e in swept["episodes"]] == [[2, 2, 2]] * 3

    replay = tmp_path / "replay.json"
    assert (
        run_cli(
            tmp_path, "--episodes-file", str(tmp_path / "e-3w2s.jsonl"), "--output", str(replay)
        )
        == 0
    )
    replayed = json.loads(replay.read_text())
    assert [e["accuracy"] for e in replayed["episodes"]] == [
        e["accuracy"] for e in swept["episodes"]
    ]
    assert replayed["config"]["episodes_file"].endswith("e-3w2s.jsonl")
    assert replayed["config"]["protocol"] == "fixed"
    capsys.readouterr()


def test_cli_protocols_and_their_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "imb.json"
    assert (
        run_cli(
            tmp_path,
            "--protocol",
            "imbalanced",
            "--ways",
            "3",
            "--total-queries",
            "10",
            "--dirichlet-alpha",
            "0.5",
            "--output",
            str(out),
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["config"]["protocol"] == "imbalanced"
    assert [e["queries"] for e in data["episodes"]] == [10, 10, 10]
    out = tmp_path / "var.json"
    assert run_cli(tmp_path, "--protocol", "variable", "--episodes", "1", "--output", str(out)) == 0
    assert all(5 <= e["ways"] <= 50 for e in json.loads(out.read_text())["episodes"])
    capsys.readouterr()
    assert run_cli(tmp_path, "--protocol", "variable", "--ways", "5", "--output", str(out)) == 2
    assert "draws ways and shots itself" in capsys.readouterr().err
    assert run_cli(tmp_path, "--ways", "3", "--shots", "1,2", "--output", str(out)) == 2
    assert "--sweep" in capsys.readouterr().err
    assert run_cli(tmp_path, "--ways", "all", "--output", str(out)) == 2
    assert "many-way" in capsys.readouterr().err


def test_cli_present_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, episodes = tmp_path / "pc.json", tmp_path / "pc.jsonl"
    common = ("--protocol", "present-classes", "--ways", "6", "--total-queries", "7")
    assert (
        run_cli(
            tmp_path,
            *common,
            "--present-classes",
            "2",
            "--save-episodes",
            str(episodes),
            "--output",
            str(out),
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["config"]["protocol"] == "present-classes"
    assert data["config"]["present_classes"] == 2 and data["config"]["total_queries"] == 7
    assert [(e["ways"], e["queries"]) for e in data["episodes"]] == [(6, 7)] * 3
    replay = tmp_path / "replay.json"
    assert run_cli(tmp_path, "--episodes-file", str(episodes), "--output", str(replay)) == 0
    replayed = json.loads(replay.read_text())
    assert replayed["config"]["present_classes"] == 2
    assert [e["accuracy"] for e in replayed["episodes"]] == [
        e["accuracy"] for e in data["episodes"]
    ]
    capsys.readouterr()
    assert run_cli(tmp_path, *common, "--output", str(out)) == 2
    assert "needs --present-classes" in capsys.readouterr().err
    assert run_cli(tmp_path, *common, "--present-classes", "7", "--output", str(out)) == 2
    assert "between 1 and --ways" in capsys.readouterr().err
    assert run_cli(tmp_path, "--present-classes", "2", "--output", str(out)) == 2
    assert "option of --protocol present-classes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(tmp_path, *common, "--present-classes", "0", "--output", str(out))
    assert "must be a positive integer" in capsys.readouterr().err
