"""Methods: exact support-init logits, untouched caller backbones, entropy, chunking, scopes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from anyshot.backbones import build_backbone
from anyshot.episodes import Episode
from anyshot.errors import ConfigurationError, EmptyClassError
from anyshot.methods import (
    FineTuning,
    SupportBasedInit,
    TransductiveFineTuning,
    build_method,
    class_means,
    prediction_entropy,
)
from anyshot.methods.registry import method_from_dict, method_to_dict


def vectors(rows: list[list[float]]) -> torch.Tensor:
    """Vectors as ``[N, D, 1, 1]`` images, embedded by ``nn.Flatten()`` to ``[N, D]``."""
    return torch.tensor(rows, dtype=torch.float32)[:, :, None, None]


def test_support_init_exact_logits() -> None:
    support = vectors([[1, 0], [3, 0], [0, 2]])
    query = vectors([[3, 4], [-1, 1]])
    episode = Episode(support, ["a", "a", "b"], query)
    logits = SupportBasedInit()(nn.Flatten(), episode)
    # w_a = (1, 0), w_b = (0, 1); n([3, 4]) = (0.6, 0.8); relu([-1, 1]) = (0, 1)
    assert torch.allclose(logits, torch.tensor([[0.6, 0.8], [0.0, 1.0]]), atol=1e-6)
    sharp = SupportBasedInit(temperature=0.5)(nn.Flatten(), episode)
    assert torch.allclose(sharp, 2 * logits, atol=1e-6)
    no_relu = SupportBasedInit(relu=False)(nn.Flatten(), episode)
    s = 2**-0.5
    assert torch.allclose(no_relu[1], torch.tensor([-s, s]), atol=1e-6)


def test_class_means_are_normalised_means_and_features_refuse_empty_class() -> None:
    embeddings = torch.tensor([[[1.0, 1.0], [3.0, 1.0], [0.0, 5.0]]])
    means = class_means(embeddings, torch.tensor([[0, 0, 1]]), 2)[0]
    assert torch.allclose(means[0], torch.tensor([2.0, 1.0]) / 5**0.5)
    assert torch.allclose(means.norm(dim=1), torch.ones(2))
    with pytest.raises(ConfigurationError, match="no support row of class 2"):
        SupportBasedInit().fit_features(embeddings, torch.tensor([[0, 0, 1]]), embeddings, ways=3)
    with pytest.raises(EmptyClassError):
        Episode(vectors([[1, 0]]), ["a"], vectors([[1, 0]]), classes=["a", "b"])


def make_episode(
    ways: int = 3, shots: int | list[int] = 2, queries: int = 4, size: int = 16
) -> Episode:
    generator = torch.Generator().manual_seed(0)
    shot_list = [shots] * ways if isinstance(shots, int) else shots
    prototypes = torch.randn(ways, 3, size, size, generator=generator)
    support, labels, query, query_labels = [], [], [], []
    for k in range(ways):
        for _ in range(shot_list[k]):
            support.append(prototypes[k] + 0.5 * torch.randn(3, size, size, generator=generator))
            labels.append(f"class-{k}")
        for _ in range(queries):
            query.append(prototypes[k] + 0.5 * torch.randn(3, size, size, generator=generator))
            query_labels.append(f"class-{k}")
    query_images = torch.stack(query) if query else torch.empty(0, 3, size, size)
    return Episode(torch.stack(support), labels, query_images, query_labels)


def snapshot(module: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in module.state_dict().items()},
        "training": [m.training for m in module.modules()],
        "requires_grad": [p.requires_grad for p in module.parameters()],
        "grads": [p.grad for p in module.parameters()],
    }


METHODS = [
    SupportBasedInit(),
    FineTuning(scope="all", epochs=2, lr=1e-3),
    FineTuning(scope="last", epochs=2, lr=1e-3),
    FineTuning(scope="head", epochs=2, lr=1e-3),
    TransductiveFineTuning(scope="all", epochs=2, lr=1e-3),
    TransductiveFineTuning(scope="last", epochs=2, lr=1e-3),
    TransductiveFineTuning(scope="head", epochs=2, lr=1e-3),
    TransductiveFineTuning(scope="last", epochs=2, lr=1e-3, likelihood_weight=0.5, center=True),
]


@pytest.mark.parametrize(
    "method", METHODS, ids=lambda m: f"{type(m).__name__}-{getattr(m, 'scope', '')}"
)
@pytest.mark.parametrize("training", [True, False])
def test_caller_backbone_is_never_modified(method, training: bool) -> None:
    torch.manual_seed(0)
    backbone = build_backbone("conv4", image_size=16)
    backbone.train(training)
    backbone.classifier = None
    before = snapshot(backbone)
    logits = method(backbone, make_episode())
    after = snapshot(backbone)
    assert logits.shape == (12, 3)
    assert torch.isfinite(logits).all()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert all(g is None for g in after["grads"])


def test_frozen_parameters_of_the_caller_stay_frozen() -> None:
    backbone = build_backbone("conv4", image_size=16)
    for param in backbone.parameters():
        param.requires_grad_(False)
    FineTuning(scope="all", epochs=1, lr=1e-3)(backbone, make_episode())
    assert not any(p.requires_grad for p in backbone.parameters())


def test_transductive_fine_tuning_lowers_query_entropy() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("conv4", image_size=16)
    episode = make_episode(ways=5, shots=1, queries=6)
    before = prediction_entropy(SupportBasedInit(temperature=0.1)(backbone, episode)).mean()
    method = TransductiveFineTuning(scope="head", epochs=25, lr=1e-2, temperature=0.1)
    after = prediction_entropy(method(backbone, episode)).mean()
    assert after < before - 0.05


def test_fine_tuning_fits_the_support_set() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("conv4", image_size=16)
    episode = make_episode(ways=4, shots=3, queries=2)
    support_as_query = Episode(
        episode.support, episode.support_labels, episode.support, episode.support_labels
    )
    method = FineTuning(scope="all", epochs=30, lr=1e-3, temperature=0.1, augment=False)
    logits = method(backbone, support_as_query)
    assert (logits.argmax(1) == support_as_query.query_targets).float().mean() == 1.0


def linear_network() -> nn.Module:
    """A network without batch-norm (chunked steps then equal one big batch exactly)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8))


def test_chunked_steps_equal_one_big_batch() -> None:
    """Gradient accumulation over chunks gives the same result as one batch (scope all)."""
    network = linear_network()
    episode = make_episode(ways=3, shots=[1, 7, 4], queries=5)
    options = {"scope": "all", "epochs": 10, "lr": 1e-2, "augment": False}
    big = TransductiveFineTuning(batch_size=1000, **options)(network, episode)  # type: ignore[arg-type]
    small = TransductiveFineTuning(batch_size=3, **options)(network, episode)  # type: ignore[arg-type]
    assert torch.allclose(big, small, atol=1e-5)


def shifted_norm_network() -> nn.Module:
    """A network with batch-norm whose stored statistics are far from its inputs' (as an
    ImageNet network's are from characters or digits)."""
    torch.manual_seed(0)
    norm = nn.BatchNorm1d(3 * 16 * 16)
    norm.running_mean.fill_(3.0)
    norm.running_var.fill_(0.05)
    return nn.Sequential(nn.Flatten(), norm, nn.Linear(3 * 16 * 16, 8))


def test_scope_all_trains_on_the_stored_norm_statistics_by_default() -> None:
    """Training sees the normalisation prediction sees: chunks do not change the result even
    with batch-norm, and the trained copy keeps the stored statistics."""
    network = shifted_norm_network()
    episode = make_episode(ways=3, shots=[1, 7, 4], queries=5)
    options = {"scope": "all", "epochs": 10, "lr": 1e-2, "augment": False}
    big = TransductiveFineTuning(batch_size=1000, **options).fit(network, episode)  # type: ignore[arg-type]
    small = TransductiveFineTuning(batch_size=3, **options)(network, episode)  # type: ignore[arg-type]
    assert torch.allclose(big.query_logits, small, atol=1e-5)
    assert big.network is not None
    trained_norm = big.network[1]
    assert torch.equal(trained_norm.running_mean, network[1].running_mean)
    assert torch.equal(trained_norm.running_var, network[1].running_var)


def test_episode_norm_statistics_are_re_estimated_on_the_episode_after_training() -> None:
    network = shifted_norm_network()
    episode = make_episode(ways=3, shots=[1, 7, 4], queries=5)
    options = {"scope": "all", "epochs": 3, "lr": 1e-2, "augment": False, "batch_size": 1000}
    tuned = FineTuning(norm_statistics="episode", **options).fit(network, episode)  # type: ignore[arg-type]
    assert tuned.network is not None
    norm = tuned.network[1]
    # one chunk of 12 support images and one of 15 query images, weighted by their sizes
    chunks = [episode.support.flatten(1), episode.query.flatten(1)]
    sizes = torch.tensor([[len(c)] for c in chunks], dtype=torch.float32)
    expected_mean = (torch.stack([c.mean(0) for c in chunks]) * sizes).sum(0) / sizes.sum()
    expected_var = (torch.stack([c.var(0) for c in chunks]) * sizes).sum(0) / sizes.sum()
    torch.testing.assert_close(norm.running_mean, expected_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(norm.running_var, expected_var, atol=1e-5, rtol=1e-4)
    assert norm.momentum == network[1].momentum
    assert torch.equal(network[1].running_mean, torch.full((3 * 16 * 16,), 3.0))
    # the query logits are those of the network with the re-estimated statistics
    with torch.no_grad():
        again = tuned.classifier(tuned.network.eval()(episode.query))
    torch.testing.assert_close(tuned.query_logits, again, atol=1e-5, rtol=1e-5)


def test_episode_norm_statistics_skip_a_single_image_chunk() -> None:
    network = shifted_norm_network()
    episode = make_episode(ways=2, shots=[2, 2], queries=0)
    one_query = Episode(episode.support, episode.support_labels, episode.support[:1], ["class-0"])
    tuned = FineTuning(scope="all", epochs=1, augment=False, norm_statistics="episode").fit(
        network, one_query
    )
    assert tuned.network is not None and torch.isfinite(tuned.query_logits).all()
    expected = episode.support.flatten(1).mean(0)  # the support chunk alone
    torch.testing.assert_close(tuned.network[1].running_mean, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigurationError, match="norm_statistics='episode' needs scope='all'"):
        FineTuning(scope="last", norm_statistics="episode")


def test_models_saved_before_norm_statistics_say_they_trained_in_training_mode() -> None:
    old = method_to_dict(FineTuning(scope="all"))
    del old["settings"]["norm_statistics"]
    assert method_from_dict(old).norm_statistics == "batch"  # type: ignore[union-attr]
    head = method_to_dict(FineTuning(scope="head"))
    del head["settings"]["norm_statistics"]
    assert method_from_dict(head).norm_statistics == "pretrained"  # type: ignore[union-attr]


def test_batch_norm_statistics_in_training_mode_on_request() -> None:
    network = shifted_norm_network()
    episode = make_episode(ways=3, shots=[1, 7, 4], queries=5)
    options = {"scope": "all", "epochs": 3, "lr": 1e-2, "augment": False}
    tuned = FineTuning(norm_statistics="batch", **options).fit(network, episode)  # type: ignore[arg-type]
    assert tuned.network is not None
    assert not torch.equal(tuned.network[1].running_mean, network[1].running_mean)
    assert torch.equal(network[1].running_mean, torch.full((3 * 16 * 16,), 3.0))
    with pytest.raises(ConfigurationError, match="norm_statistics must be one of"):
        FineTuning(norm_statistics="running")


def test_same_seed_same_logits_with_augmentation() -> None:
    backbone = build_backbone("conv4", image_size=16)
    episode = make_episode()
    first = TransductiveFineTuning(scope="all", epochs=2, lr=1e-3, seed=3)(backbone, episode)
    again = TransductiveFineTuning(scope="all", epochs=2, lr=1e-3, seed=3)(backbone, episode)
    other = TransductiveFineTuning(scope="all", epochs=2, lr=1e-3, seed=4)(backbone, episode)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_many_ways_unbalanced_and_many_shots_in_small_chunks() -> None:
    backbone = build_backbone("conv4", image_size=16)
    episode = make_episode(ways=12, shots=[1, 2, 3, 40, 1, 1, 5, 9, 1, 2, 60, 1], queries=1)
    logits = TransductiveFineTuning(scope="last", epochs=2, lr=1e-3, batch_size=16)(
        backbone, episode
    )
    assert logits.shape == (12, 12)


def test_inductive_use_without_queries() -> None:
    backbone = build_backbone("conv4", image_size=16)
    episode = make_episode(queries=0)
    assert TransductiveFineTuning(scope="head", epochs=2)(backbone, episode).shape == (0, 3)


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="augment=True needs scope='all'"):
        FineTuning(scope="head", augment=True)
    with pytest.raises(ConfigurationError, match="scope must be one of"):
        FineTuning(scope="everything")
    with pytest.raises(ConfigurationError, match="plain module"):
        FineTuning(scope="last")(nn.Flatten(), Episode(vectors([[1, 0]]), ["a"], vectors([[1, 0]])))
    with pytest.raises(ConfigurationError, match="scope"):
        build_method("support-init", scope="head")
    with pytest.raises(ConfigurationError, match="unknown method"):
        build_method("magic")


def test_class_balance_term_is_exact_across_chunks() -> None:
    """The marginal-entropy gradient is computed exactly when the query is split in chunks."""
    backbone = linear_network()
    episode = make_episode(ways=4, shots=2, queries=5)
    options = {
        "scope": "all",
        "augment": False,
        "epochs": 10,
        "lr": 1e-2,
        "temperature": 0.1,
        "balance_weight": 1.0,
    }
    one = TransductiveFineTuning(batch_size=1000, **options)(backbone, episode)  # type: ignore[arg-type]
    many = TransductiveFineTuning(batch_size=3, **options)(backbone, episode)  # type: ignore[arg-type]
    assert torch.allclose(one, many, atol=1e-5)
    plain = TransductiveFineTuning(batch_size=1000, **{**options, "balance_weight": 0.0})  # type: ignore[arg-type]
    assert not torch.allclose(plain(backbone, episode), one)  # the term does something


def test_network_lr_sets_the_networks_rate_apart_from_the_heads() -> None:
    """Scope last: a tiny ``network_lr`` leaves the network's weights (almost) as they were
    while the head still trains at ``lr``; without it both move at ``lr``."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        backbone = build_backbone("conv4", channels=3, image_size=16)
    generator = torch.Generator().manual_seed(0)
    support = torch.randn(6, 3, 16, 16, generator=generator)
    episode = Episode(support, [0, 0, 1, 1, 2, 2], support[:0])
    base = FineTuning(scope="last", lr=0.05, temperature=0.1, epochs=5, augment=False)

    def fit(method: FineTuning) -> tuple[float, torch.Tensor]:
        """How far the network's weights moved, and the trained head's weights."""
        fitted = method.fit(backbone, episode)
        assert fitted.network is not None
        before = dict(backbone.named_parameters())  # weights, not batch-norm statistics
        after = dict(fitted.network.named_parameters())
        moved = max(float((after[k] - before[k]).detach().abs().max()) for k in before)
        return moved, fitted.classifier.weight.detach()

    moved, head = fit(dataclasses.replace(base, network_lr=1e-9))
    assert moved < 1e-6
    _, still = fit(dataclasses.replace(base, lr=1e-9, network_lr=1e-9))
    assert float((head - still).abs().max()) > 1e-3  # the head trained at lr
    moved, _ = fit(base)
    assert moved > 1e-3  # network_lr defaults to lr
    with pytest.raises(ConfigurationError, match="network_lr"):
        FineTuning(network_lr=0.0)


def test_scope_last_with_its_stage_standing_still_is_the_head() -> None:
    """Batch-norm stays in eval mode in the stage scope last trains, so with a negligible
    network_lr the last-stage path gives the head's answer (the same class-mean start, the
    same steps)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        backbone = build_backbone("conv4", channels=3, image_size=16)
    generator = torch.Generator().manual_seed(1)
    prototypes = torch.randn(3, 3, 16, 16, generator=generator)
    labels = [k for k in range(3) for _ in range(4)]
    images = prototypes[labels] + 0.5 * torch.randn(12, 3, 16, 16, generator=generator)
    episode = Episode(images[::2], labels[::2], images[1::2], labels[1::2])
    head = FineTuning(scope="head", lr=0.01, temperature=0.1, epochs=10)
    last = dataclasses.replace(head, scope="last", network_lr=1e-12, augment=False)
    torch.testing.assert_close(last(backbone, episode), head(backbone, episode), atol=1e-3, rtol=0)
