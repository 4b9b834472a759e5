"""Episode validation, label mapping and the seeded sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anyshot.episodes import Episode, EpisodeSampler, image_batches
from anyshot.errors import DatasetError, EmptyClassError, EpisodeError


def images(n: int, shape: tuple[int, int, int] = (3, 8, 8)) -> torch.Tensor:
    return torch.randn(n, *shape)


@pytest.mark.parametrize(
    ("labels", "classes"),
    [
        (["dog", "cat", "dog", "emu"], ("cat", "dog", "emu")),
        ([7, 3, 3, 100], (3, 7, 100)),
        ([(1, "a"), (0, "b"), (1, "a")], ((0, "b"), (1, "a"))),
    ],
)
def test_label_mapping_round_trips_strings_ints_and_noncontiguous(labels, classes) -> None:
    episode = Episode(images(len(labels)), labels, images(2), [labels[0], labels[-1]])
    assert episode.classes == classes
    assert episode.ways == len(classes)
    targets = episode.support_targets
    assert targets.dtype == torch.long
    assert targets.min() >= 0 and targets.max() == len(classes) - 1
    assert episode.decode(targets) == list(labels)
    assert episode.decode(episode.query_targets) == [labels[0], labels[-1]]


def test_unorderable_labels_keep_first_appearance_order() -> None:
    a, b = frozenset({1}), frozenset({2})
    episode = Episode(images(3), [b, a, b], images(0))
    assert episode.classes == (b, a)
    assert episode.shots == (2, 1)


def test_labels_from_tensor_and_numpy() -> None:
    episode = Episode(images(4), torch.tensor([5, 2, 5, 2]), images(1), np.array([2]))
    assert episode.classes == (2, 5)
    assert episode.query_targets.tolist() == [0]


def test_encode_unknown_label_names_it() -> None:
    episode = Episode(images(2), ["a", "b"], images(0))
    with pytest.raises(EpisodeError, match="'zebra'"):
        episode.encode(["zebra"])


def test_mixed_label_types_are_refused() -> None:
    with pytest.raises(EpisodeError, match="mix types"):
        Episode(images(2), [1, "1"], images(0))


def test_nan_label_is_refused() -> None:
    with pytest.raises(EpisodeError, match="NaN"):
        Episode(images(2), [0.5, float("nan")], images(0))


def test_empty_class_is_refused_with_its_name() -> None:
    with pytest.raises(EmptyClassError, match="'owl'"):
        Episode(images(2), ["cat", "dog"], images(0), classes=["cat", "dog", "owl"])
    with pytest.raises(EmptyClassError, match="support set is empty"):
        Episode(images(0), [], images(0))


def test_shape_mismatches_are_refused() -> None:
    with pytest.raises(EpisodeError, match=r"3 support images but 2 support labels"):
        Episode(images(3), ["a", "b"], images(1))
    with pytest.raises(EpisodeError, match=r"query images are \(3, 9, 9\)"):
        Episode(images(2), ["a", "b"], images(1, (3, 9, 9)))
    with pytest.raises(EpisodeError, match="4-D tensor"):
        Episode(torch.randn(2, 8, 8), ["a", "b"], images(1))
    with pytest.raises(EpisodeError, match="2 query images but 1 query labels"):
        Episode(images(2), ["a", "b"], images(2), ["a"])
    with pytest.raises(EpisodeError, match="float tensor"):
        Episode(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), ["a", "b"], images(1))


def test_query_label_without_support_is_refused() -> None:
    with pytest.raises(EpisodeError, match="no support images"):
        Episode(images(2), ["a", "b"], images(1), ["c"])


def test_episode_is_immutable() -> None:
    episode = Episode(images(2), ["a", "b"], images(1))
    with pytest.raises(AttributeError):
        episode.support_labels = ("b", "a")  # type: ignore[misc]


def test_image_batches_cover_everything_in_order() -> None:
    data = images(10)
    batches = list(image_batches(data, 4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat(batches), data)
    order = torch.tensor([9, 0, 5])
    assert torch.equal(next(image_batches(data, 3, order)), data[order])
    as_list = [img for img in data]
    assert torch.equal(torch.cat(list(image_batches(as_list, 3))), data)


# --- sampler ------------------------------------------------------------------------------


def labels_with_counts(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=1, max_value=30), min_size=2, max_size=12),
    ways=st.integers(min_value=1, max_value=6),
    shots=st.integers(min_value=1, max_value=5),
    queries=st.integers(min_value=0, max_value=5),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    index=st.integers(min_value=0, max_value=10_000),
)
def test_sampler_invariants(counts, ways, shots, queries, seed, index) -> None:
    labels = labels_with_counts(counts)
    eligible = sum(c >= shots + queries for c in counts)
    if eligible < ways:
        with pytest.raises(DatasetError, match="classes with at least"):
            EpisodeSampler(labels, ways=ways, shots=shots, queries=queries, seed=seed)
        return
    sampler = EpisodeSampler(labels, ways=ways, shots=shots, queries=queries, seed=seed)
    spec = sampler.sample(index)
    assert len(spec.classes) == ways == len(set(spec.classes))
    for cls, support, query in zip(spec.classes, spec.support, spec.query, strict=True):
        assert len(support) == shots and len(query) == queries
        assert set(support).isdisjoint(query)
        assert all(labels[i] == cls for i in (*support, *query))
        assert len(set(support)) == shots and len(set(query)) == queries
    assert spec == EpisodeSampler(
        labels, ways=ways, shots=shots, queries=queries, seed=seed
    ).sample(index)


def test_sampler_unbalanced_shots_and_seeds() -> None:
    labels = labels_with_counts([20] * 10)
    sampler = EpisodeSampler(labels, ways=3, shots=[1, 5, 10], queries=4, seed=7)
    spec = sampler.sample(0)
    assert spec.shots == (1, 5, 10)
    first = list(sampler.take(5))
    assert first == list(
        EpisodeSampler(labels, ways=3, shots=[1, 5, 10], queries=4, seed=7).take(5)
    )
    other = list(EpisodeSampler(labels, ways=3, shots=[1, 5, 10], queries=4, seed=8).take(5))
    assert first != other
    assert len({s.classes for s in first}) > 1  # episodes differ within a stream


def test_sampler_is_stable_across_versions() -> None:
    """Pins the stream: a change here silently changes every published episode list."""
    sampler = EpisodeSampler(labels_with_counts([20] * 10), ways=3, shots=1, queries=2, seed=0)
    spec = sampler.sample(0)
    assert spec.to_dict() == EXPECTED_FIRST_EPISODE


def test_sampler_rejects_bad_arguments() -> None:
    labels = labels_with_counts([5, 5])
    with pytest.raises(ValueError, match="2 shot counts for 3 ways"):
        EpisodeSampler(labels, ways=3, shots=[1, 2], queries=0)
    with pytest.raises(ValueError, match="at least 1 shot"):
        EpisodeSampler(labels, ways=2, shots=0, queries=0)


EXPECTED_FIRST_EPISODE: dict = {
    "classes": [5, 9, 6],
    "support": [[119], [191], [133]],
    "query": [[101, 100], [190, 197], [130, 132]],
}
