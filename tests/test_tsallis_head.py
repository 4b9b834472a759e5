"""The default's second head: alpha-TIM's query terms (Tsallis entropies) in the one head loop,
and the per-episode choice of the answer that explains the queries with clearly fewer classes."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from anyshot.cli import build_parser
from anyshot.cli.options import method_from_args
from anyshot.cli.practitioner import _method_words
from anyshot.errors import ConfigurationError
from anyshot.methods import FineTuning
from anyshot.methods.features import EpisodeRows, FittedHead, answer_of
from anyshot.methods.head import (
    fit_head,
    inlier_queries,
    parsimonious,
    predicted_classes,
    tsallis_order,
)
from anyshot.methods.objective import (
    QueryWeights,
    marginal_entropy,
    marginal_entropy_gradient,
    query_loss,
    tsallis_entropy,
    uniform_log_prior,
)
from anyshot.methods.presets import RECOMMENDED
from anyshot.outliers import covering
from conftest import clustered_episode
from test_safe_head import AS_TRAINED, BASE, accuracy, nuisance_episodes

WITHOUT = dataclasses.replace(AS_TRAINED, tsallis_head=False)


def test_tsallis_entropy_is_shannons_at_order_one_and_its_limit() -> None:
    p = torch.softmax(torch.randn(5, 7, generator=torch.Generator().manual_seed(0)), -1)
    shannon = -(p * p.log()).sum(-1)
    torch.testing.assert_close(tsallis_entropy(p, 1.0), shannon)
    torch.testing.assert_close(tsallis_entropy(p, 1.0001), shannon, atol=1e-3, rtol=0)
    torch.testing.assert_close(tsallis_entropy(p, 2.0), 1 - (p * p).sum(-1))
    uniform = torch.full((4,), 0.25)
    assert float(tsallis_entropy(uniform, 7.0)) == pytest.approx((1 - 4 * 0.25**7) / 6)


@pytest.mark.parametrize("order", [1.0, 2.0, 7.0])
def test_marginal_entropy_gradient_is_the_gradient(order: float) -> None:
    m = torch.softmax(torch.randn(3, 6, generator=torch.Generator().manual_seed(1)), -1)
    m.requires_grad_(True)
    tsallis_entropy(m, order).sum().backward()
    assert m.grad is not None
    torch.testing.assert_close(marginal_entropy_gradient(m.detach(), order), m.grad)


@pytest.mark.parametrize("order", [1.0, 2.0, 7.0])
def test_chunked_balance_term_has_the_exact_gradient(order: float) -> None:
    """Network scopes linearise the balance term around the whole query set's mean prediction
    (:func:`marginal_entropy_gradient`): summed over chunks, its gradient is the exact one."""
    logits = torch.randn(2, 12, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    weights = QueryWeights(entropy=0.5, balance=1.0, order=order)
    prior = uniform_log_prior((2,), 5, logits.device)
    query_loss(logits, weights, 12, prior)[0].backward()
    assert logits.grad is not None
    exact = logits.grad.clone()
    logits.grad = None
    with torch.no_grad():
        gradient = marginal_entropy_gradient(torch.softmax(logits, -1).mean(-2), order)
    for chunk in logits.split(5, dim=1):
        query_loss(chunk, weights, 12, prior, balance_gradient=gradient)[0].backward()
    torch.testing.assert_close(logits.grad, exact)
    p = torch.softmax(logits.detach(), -1)
    torch.testing.assert_close(marginal_entropy(p, order), tsallis_entropy(p.mean(-2), order))


def test_tsallis_orders_are_alpha_tims() -> None:
    assert [tsallis_order(s) for s in (1, 2, 4, 5, 20)] == [2.0, 5.0, 5.0, 7.0, 7.0]
    head = RECOMMENDED.head_training.tsallis(shots=1)
    assert head.weights == QueryWeights(entropy=1.0, balance=1.0, order=2.0)
    assert not head.center and not head.safeguards and not head.tsallis_head
    assert head.temperature == RECOMMENDED.temperature and head.lr == RECOMMENDED.lr


def _head(predictions: list[list[int]], ways: int) -> FittedHead:
    """A head of ``E`` episodes whose query logits predict ``predictions`` ``[E][Q]``."""
    logits = F.one_hot(torch.tensor(predictions), ways).float() * 5
    episodes = logits.shape[0]
    return FittedHead(
        torch.randn(episodes, ways, 3), torch.zeros(episodes, ways), None, 0.1, True, False, logits
    )


def test_parsimonious_takes_the_rival_only_with_clearly_fewer_classes_of_a_part() -> None:
    ways = 8
    head = _head(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],  # 1 class: the rival cannot predict fewer
            [0, 1, 2, 3, 0, 1, 2, 3],  # 4 of 8 classes
            [0, 1, 2, 3, 0, 1, 2, 3],  # 4 of 8 classes
            [0, 1, 2, 3, 4, 5, 6, 7],  # every class: share rules the rival out
        ],
        ways,
    )
    rival = _head(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 1, 2, 3, 0, 1, 2, 2],  # 3.7 classes: within the margin
            [0, 0, 2, 2, 0, 0, 2, 2],  # 2 classes
            [0, 0, 0, 0, 1, 1, 1, 1],  # 2 classes
        ],
        ways,
    )
    assert predicted_classes(rival.query_logits)[1] > 4 - 0.5
    asked = []

    def train(mask: torch.Tensor) -> FittedHead:  # the rival, trained for the masked episodes
        asked.append(mask.tolist())
        return rival.take(mask.nonzero().squeeze(1))

    chosen = parsimonious(head, train, margin=0.5, share=0.75)
    assert asked == [[False, True, True, False]]  # trained only where it could be chosen
    torch.testing.assert_close(chosen.query_logits[2], rival.query_logits[2])
    torch.testing.assert_close(chosen.weight[2], rival.weight[2])
    for episode in (0, 1, 3):
        torch.testing.assert_close(chosen.query_logits[episode], head.query_logits[episode])
        torch.testing.assert_close(chosen.weight[episode], head.weight[episode])
    everything = parsimonious(head, train, margin=0.0, share=1.0)
    torch.testing.assert_close(everything.query_logits[1:3], rival.query_logits[1:3])
    seen = []

    def refuse_second(candidates: torch.Tensor, other: FittedHead) -> torch.Tensor:
        seen.append((candidates.tolist(), other.query_logits.shape[0]))
        return torch.tensor([True, False])  # of the two candidates, episodes 1 and 2

    refused = parsimonious(head, train, margin=0.0, share=0.9, accept=refuse_second)
    assert seen == [([False, True, True, False], 2)]
    torch.testing.assert_close(refused.query_logits[1], rival.query_logits[1])
    torch.testing.assert_close(refused.query_logits[2], head.query_logits[2])
    assert refused.tsallis is not None and refused.tsallis.tolist() == [False, True, False, False]


@pytest.mark.parametrize("present", [3, 5])
def test_the_tsallis_head_helps_when_the_queries_hold_a_few_of_many_classes(present: int) -> None:
    batch = nuisance_episodes(24, 20, present, 75 // present, seed=3)
    base, without, default = (accuracy(m, batch) for m in (BASE, WITHOUT, AS_TRAINED))
    assert without > base
    assert default > without + 0.05


def _both_heads() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8 episodes of 20 one-shot classes and 60 queries: 6 of 3 classes (the Tsallis head
    answers most, not all), 2 of every class (gated)."""
    few = nuisance_episodes(6, 20, 3, 20, seed=7)
    every = nuisance_episodes(2, 20, 20, 3, seed=7)
    support, targets, query, _ = (torch.cat(pair) for pair in zip(few, every, strict=True))
    return support, targets, query


def test_a_batch_mixing_both_heads_is_each_episode_alone_and_its_classifier() -> None:
    """Episodes answered by either head, trained together or alone, give the same logits, and
    each fitted classifier (what a saved model keeps) recomputes its episode's logits."""
    support, targets, query = _both_heads()
    together = AS_TRAINED.fit_features(support, targets, query)
    alone = AS_TRAINED.fit_features(support, targets, query, episodes_per_chunk=1)
    torch.testing.assert_close(alone.query_logits, together.query_logits, atol=1e-5, rtol=0)
    without = WITHOUT.fit_features(support, targets, query)
    changed = (together.query_logits - without.query_logits).abs().amax((1, 2)) > 1e-4
    assert 0 < int(changed.sum()) < 8  # the set-up: both heads answer some episodes
    for episode in range(8):
        with torch.no_grad():
            again = together.classifier(episode)(query[episode])
        torch.testing.assert_close(again, together.query_logits[episode], atol=1e-4, rtol=0)


def test_the_gate_counts_the_classes_of_the_chosen_head() -> None:
    """With 30 queries of 3 of 20 classes the Tsallis head's answer is chosen where the first
    head spreads them over many classes; the gate (6 + shots / 2 queries per class) then counts
    the chosen head's classes: it keeps a trained answer where the first head alone would have
    been gated (``tsallis_gated`` off: it would answer some gated episodes again)."""
    support, targets, query, _ = nuisance_episodes(16, 20, 3, 10, seed=6)
    off = {"min_queries_per_class": 0.0, "queries_per_shot": 0.0, "min_agreement": 0.0}
    first = dataclasses.replace(WITHOUT, **off).fit_features(support, targets, query).query_logits
    chosen = dataclasses.replace(AS_TRAINED, **off)
    answer = chosen.fit_features(support, targets, query).query_logits
    counted = dataclasses.replace(AS_TRAINED, tsallis_gated=False)
    gated = counted.fit_features(support, targets, query).gated
    assert gated is not None
    needed = AS_TRAINED.min_queries_per_class + AS_TRAINED.queries_per_shot
    expected = needed * predicted_classes(answer) > 30
    assert gated.tolist() == expected.tolist()
    assert bool((expected != (needed * predicted_classes(first) > 30)).any())


@pytest.mark.parametrize("agreement", [0.5, 0.65])
def test_the_tsallis_head_challenges_the_gates_answer(agreement: float) -> None:
    """30 queries of 3 of 20 classes: where the gate closes on the first head's spread
    predictions, the Tsallis head answers instead exactly when the gate's answer predicts fewer
    than ``tsallis_share`` of the classes, the Tsallis head more than ``tsallis_margin`` fewer
    still, the gate opens on its count, the two answers agree on at least ``min_agreement`` of
    the queries and support-init's predictions do not cover the classes; its answer is then the
    Tsallis head's own, marked in ``tsallis``, and every other episode keeps its answer. With
    10 queries (too few for even two classes) nothing changes."""
    plain = dataclasses.replace(AS_TRAINED, gate_outlier_rate=0.0, min_agreement=agreement)
    before = dataclasses.replace(plain, tsallis_gated=False)
    support, targets, query, _ = nuisance_episodes(16, 20, 3, 10, seed=6)
    old, new = (m.fit_features(support, targets, query) for m in (before, plain))
    assert old.gated is not None and new.gated is not None and new.tsallis is not None
    rescued = old.gated & ~new.gated
    assert int(rescued.sum()) >= 2 and not bool((new.gated & ~old.gated).any())
    rows = EpisodeRows(support, targets, query, 20)
    tsallis = fit_head(plain.head_training.tsallis(shots=1.0), rows).query_logits
    needed = plain.min_queries_per_class + plain.queries_per_shot
    gate_answer, rival = predicted_classes(old.query_logits), predicted_classes(tsallis)
    expected = (gate_answer < 0.75 * 20) & (rival < gate_answer - 0.5) & (needed * rival <= 30)
    agree = (tsallis.argmax(-1) == old.query_logits.argmax(-1)).float().mean(1) >= agreement
    nearest = BASE.fit_features(support, targets, query).query_logits.argmax(-1)
    expected = old.gated & expected & agree & ~covering(nearest, 20)
    assert rescued.tolist() == expected.tolist()
    torch.testing.assert_close(new.query_logits[rescued], tsallis[rescued], atol=1e-5, rtol=0)
    assert new.tsallis[rescued].all() and not new.fallback[rescued].any()  # type: ignore[index]
    torch.testing.assert_close(new.query_logits[~rescued], old.query_logits[~rescued])
    few = nuisance_episodes(8, 20, 2, 5, seed=6)[:3]
    torch.testing.assert_close(
        plain.fit_features(*few).query_logits, before.fit_features(*few).query_logits
    )
    # queries of every one of 40 classes: where support-init's predictions cover them, the
    # gate's answer stays (the Tsallis head would merge classes in some)
    every = nuisance_episodes(8, 40, 40, 3, seed=6, nuisance=3.0)[:3]
    spread = covering(BASE.fit_features(*every).query_logits.argmax(-1), 40)
    assert int(spread.sum()) >= 4
    torch.testing.assert_close(
        plain.fit_features(*every).query_logits[spread],
        before.fit_features(*every).query_logits[spread],
    )
    with pytest.raises(ConfigurationError, match="tsallis_gated"):
        dataclasses.replace(RECOMMENDED, scope="last", gate_prior_share=0.0)


def test_the_challenge_to_the_gate_counts_the_queries_the_gate_counts() -> None:
    """With the default's ``gate_outlier_rate``, the gate opens on the Tsallis head's classes
    among the queries the unknown rule keeps, and on their number (the class counts of the
    rule and the agreement take every query)."""
    before = dataclasses.replace(AS_TRAINED, tsallis_gated=False)
    support, targets, query, _ = nuisance_episodes(16, 20, 3, 10, seed=8)
    old, new = (m.fit_features(support, targets, query) for m in (before, AS_TRAINED))
    assert old.gated is not None and new.gated is not None
    rows = EpisodeRows(support, targets, query, 20)
    keep = inlier_queries(rows, AS_TRAINED.gate_outlier_rate, relu=True)
    assert not bool(keep.all())  # the set-up: some queries are not counted
    tsallis = fit_head(AS_TRAINED.head_training.tsallis(shots=1.0), rows).query_logits
    needed = AS_TRAINED.min_queries_per_class + AS_TRAINED.queries_per_shot
    gate_answer, rival = predicted_classes(old.query_logits), predicted_classes(tsallis)
    opens = needed * predicted_classes(tsallis, keep) <= keep.sum(1)
    agree = (tsallis.argmax(-1) == old.query_logits.argmax(-1)).float().mean(1) >= 0.5
    nearest = BASE.fit_features(support, targets, query).query_logits.argmax(-1)
    expected = (gate_answer < 0.75 * 20) & (rival < gate_answer - 0.5) & opens & agree
    expected = old.gated & expected & ~covering(nearest, 20)
    assert (old.gated & ~new.gated).tolist() == expected.tolist() and bool(expected.any())


def test_the_tsallis_heads_answers_get_their_own_calibration() -> None:
    """Episodes the Tsallis head answered are divided by ``tsallis_confidence_temperature *
    shots ** tsallis_confidence_shots_power`` instead of the first head's rule, the others keep
    their calibration; the
    predictions never change, and take / concatenate keep the mask with its episodes."""
    support, targets, query = _both_heads()
    plain = AS_TRAINED.fit_features(support, targets, query)
    assert plain.tsallis is not None and plain.fallback is not None
    answered = plain.tsallis & ~plain.fallback  # a safeguard's answer is not the Tsallis head's
    assert 0 < int(answered.sum()) < 8  # the set-up: both heads answer
    rule = dataclasses.replace(AS_TRAINED, confidence_temperature=2.0)
    ruled = rule.fit_features(support, targets, query)
    own = dataclasses.replace(
        rule, tsallis_confidence_temperature=3.0, tsallis_confidence_shots_power=-0.5
    ).fit_features(support, targets, query)
    shots = support.shape[1] / 20
    for episode in range(8):
        # the rule's episodes (not the guard's support-init answers) are the plain ones / 2
        scale = 2.0 / (3.0 * shots**-0.5) if bool(answered[episode]) else 1.0
        expected = ruled.query_logits[episode] * scale
        torch.testing.assert_close(own.query_logits[episode], expected, atol=1e-5, rtol=1e-5)
        assert own.query_logits[episode].argmax(-1).equal(plain.query_logits[episode].argmax(-1))
        with torch.no_grad():
            again = own.classifier(episode)(query[episode])
        torch.testing.assert_close(again, own.query_logits[episode], atol=1e-4, rtol=0)
    order = torch.tensor([7, 0, 3])
    merged = FittedHead.concatenate([plain.take(order), plain.take(torch.tensor([5]))])
    assert merged.tsallis is not None
    assert merged.tsallis.tolist() == plain.tsallis[torch.tensor([7, 0, 3, 5])].tolist()
    for bad in ({"tsallis_confidence_temperature": 0.0}, {"tsallis_confidence_shots_power": 1e999}):
        with pytest.raises(ConfigurationError, match="tsallis_confidence"):
            dataclasses.replace(RECOMMENDED, **bad)  # type: ignore[arg-type]


def test_which_head_answered_is_reported() -> None:
    """``answer_of`` says "tsallis" on the mask without the safeguards' episodes, and the
    practitioner's summary names the Tsallis head only where it answered."""
    support, targets, query, _ = nuisance_episodes(8, 20, 3, 25, seed=5)
    fitted = AS_TRAINED.fit_features(support, targets, query)
    assert fitted.tsallis is not None and fitted.fallback is not None
    answered = [answer_of(fitted, e) == "tsallis" for e in range(8)]
    assert answered == (fitted.tsallis & ~fitted.fallback).tolist() and any(answered)
    assert not any(
        answer_of(WITHOUT.fit_features(support, targets, query), e) == "tsallis" for e in range(8)
    )
    model = SimpleNamespace(
        method_=RECOMMENDED, classes_=list(range(20)), fit_info_={"tsallis_head": True}
    )
    assert "Tsallis head: the 75 query/unlabelled images appear to hold a few of the 20" in (
        _method_words(model, 75)
    )
    model.fit_info_ = {"tsallis_head": True, "fallback": "gate"}  # a safeguard's words win
    assert "Tsallis" not in _method_words(model, 75)
    model.fit_info_ = {"tsallis_head": False}
    assert "Tsallis" not in _method_words(model, 75)


@pytest.mark.parametrize(("present", "per_class"), [(1, 75), (20, 5)])
def test_one_or_every_class_present_mostly_keeps_the_first_heads_answer(
    present: int, per_class: int
) -> None:
    """The Tsallis head answers only an episode it explains with clearly fewer classes (one
    present class the first head spread over several), and there more accurately."""
    support, targets, query, labels = nuisance_episodes(12, 20, present, per_class, seed=4)
    on, off = (m.fit_features(support, targets, query) for m in (AS_TRAINED, WITHOUT))
    changed = (on.query_logits != off.query_logits).flatten(1).any(1)
    assert int(changed.sum()) == (1 if present == 1 else 0)  # the set-up: one spread episode
    assert on.tsallis is None or on.tsallis.tolist() == changed.tolist()
    classes_on, classes_off = (predicted_classes(h.query_logits) for h in (on, off))
    assert bool((classes_on[changed] < classes_off[changed] - AS_TRAINED.tsallis_margin).all())
    right_on, right_off = ((h.query_logits.argmax(-1) == labels).float() for h in (on, off))
    assert bool((right_on.mean(1)[changed] >= right_off.mean(1)[changed]).all())


def test_settings_and_command_line() -> None:
    assert RECOMMENDED.tsallis_head and not RECOMMENDED.inductive().tsallis_head
    for bad in (
        {"tsallis_margin": -1.0},
        {"tsallis_margin": float("inf")},
        {"tsallis_share": 1.5},
    ):
        with pytest.raises(ConfigurationError):
            dataclasses.replace(RECOMMENDED, **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="query term"):
        FineTuning(scope="head", tsallis_head=True)  # inductive: nothing to choose between
    parser = build_parser()
    base = ["evaluate", "--dataset", "omniglot", "--data-root", "x", "--output", "o.json"]
    flags = ["--no-tsallis-head", "--tsallis-margin", "2", "--tsallis-share", "0.5"]
    method = method_from_args(parser.parse_args([*base, *flags]))
    assert isinstance(method, FineTuning)
    assert not method.tsallis_head and method.tsallis_margin == 2 and method.tsallis_share == 0.5
    default = method_from_args(parser.parse_args(base))
    assert isinstance(default, FineTuning) and default.tsallis_head


def test_evaluation_records_say_which_head_answered() -> None:
    """Both evaluation paths (cached rows, and the method on images through its ``fit``)
    record which head answered each episode, as the fitted heads' masks say, and the summary
    counts them; support-init records nothing."""
    from anyshot.episodes import Episode
    from anyshot.evaluation import evaluate
    from anyshot.methods.features import answer_of
    from anyshot.methods.presets import SUPPORT_INIT

    support, targets, query, query_targets = nuisance_episodes(6, 20, 3, 25, seed=5)
    fitted = AS_TRAINED.fit_features(support, targets, query)
    expected = [answer_of(fitted, e) for e in range(6)]
    assert set(expected) <= {"first", "tsallis", "gate", "guard"} and "tsallis" in expected
    flatten = torch.nn.Flatten()  # rows as [N, D, 1, 1] images

    def images(rows: torch.Tensor) -> torch.Tensor:
        return rows[:, :, None, None]

    episodes = [
        Episode(
            images(support[e]),
            targets[e].tolist(),
            images(query[e]),
            query_targets[e].tolist(),
            classes=range(20),
        )
        for e in range(6)
    ]
    result = evaluate(AS_TRAINED, flatten, episodes)
    assert [r["answer"] for r in result.records] == expected
    counts = {a: expected.count(a) for a in set(expected)}
    assert result.summary["answers"] == dict(sorted(counts.items()))
    plain = evaluate(SUPPORT_INIT, flatten, episodes)
    assert "answer" not in plain.records[0] and "answers" not in plain.summary


def test_parsimonious_gives_the_band_the_rival_whatever_its_class_count() -> None:
    ways = 8
    head = _head([[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6, 7]], ways)  # every class
    rival = _head([[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3, 4, 5, 6, 6]], ways)  # not fewer
    asked = []

    def train(mask: torch.Tensor) -> FittedHead:
        asked.append(mask.tolist())
        return rival.take(mask.nonzero().squeeze(1))

    assert parsimonious(head, train, margin=0.5, share=0.75).tsallis is None  # no candidate
    chosen = parsimonious(head, train, margin=0.5, share=0.75, band=torch.tensor([False, True]))
    assert asked == [[False, True]]
    assert chosen.tsallis is not None and chosen.tsallis.tolist() == [False, True]
    torch.testing.assert_close(chosen.query_logits[1], rival.query_logits[1])
    torch.testing.assert_close(chosen.query_logits[0], head.query_logits[0])


def test_the_tsallis_band_acts_from_two_labelled_images_per_class() -> None:
    episodes = [clustered_episode([40, 20, 10, 5, 0], seed=seed) for seed in range(4)]
    support = torch.stack([e.support.flatten(1) for e in episodes])  # [4, 5, D]: one shot
    targets = torch.stack([e.support_targets for e in episodes])
    query = torch.stack([e.query.flatten(1) for e in episodes])  # 3.1 of 5 classes predicted
    everywhere = dataclasses.replace(AS_TRAINED, tsallis_band=(0.0, 1.0))
    without = dataclasses.replace(AS_TRAINED, tsallis_band=(0.0, 0.0))
    one_shot = everywhere.fit_features(support, targets, query)
    plain = without.fit_features(support, targets, query)
    torch.testing.assert_close(one_shot.query_logits, plain.query_logits)  # below 2 shots
    second = support + torch.randn(support.shape, generator=torch.Generator().manual_seed(0))
    two = (torch.cat([support, second], 1), torch.cat([targets, targets], 1), query)
    banded, plain = everywhere.fit_features(*two), without.fit_features(*two)
    assert plain.tsallis is None or not bool(plain.tsallis.any())  # the rule alone: first head
    assert banded.tsallis is not None and bool(banded.tsallis.all())
    assert (banded.query_logits - plain.query_logits).abs().amax() > 1e-3


def test_the_tsallis_band_must_be_an_interval_of_shares() -> None:
    for bad in ((0.8, 0.4), (-0.1, 0.5), (0.5, 1.5), (0.5,)):
        with pytest.raises(ConfigurationError, match="tsallis_band"):
            FineTuning(scope="head", tsallis_band=bad)  # type: ignore[arg-type]
    assert FineTuning(scope="head", tsallis_band=[0.4, 0.8]).tsallis_band == (0.4, 0.8)  # type: ignore[arg-type]
