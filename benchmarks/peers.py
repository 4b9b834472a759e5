"""Peer transductive few-shot methods on embeddings, for reference rows next to anyshot's.

Every peer is a :data:`PeerMethod`: ``(support [E, S, D] float, targets [E, S] long class
indices 0..K-1 (every class present in every episode), query [E, Q, D], ways K) -> [E, Q, K]``
query logits or log-probabilities (the prediction is their ``argmax``). ``E`` episodes run
together (one episode is ``E = 1``); episodes are independent, so a batch gives what ``E``
single-episode calls give (up to float rounding). No global RNG is used: every peer is
deterministic. Each is written from its paper and the authors' public code (cited in its
docstring, with the settings it runs); none tunes anything on our data. Checked on 10-20
mini-ImageNet val episodes (1 and 5 shots): ``tim`` gives easyfsl 1.5.0's ``TIM`` logits (to
2e-6) and ``bd_cspn(..., eps=1.0)`` its ``BDCSPN`` predictions; ``alpha-tim`` and ``paddle``
give the outputs of line-by-line transcriptions of the authors' code (to 1e-5 / 3e-6).

:data:`PEERS` (name -> method):

* ``tim``: TIM-GD (Boudiaf et al., NeurIPS 2020) as easyfsl's benchmark configuration runs it.
* ``alpha-tim``: alpha-TIM (Veilleux et al., NeurIPS 2021) with the authors' settings.
* ``paddle``: PADDLE (Martin et al., NeurIPS 2022) with the authors' settings.
* ``bd-cspn``: BD-CSPN prototype rectification (Liu et al., ECCV 2020).

``support_init`` (anyshot's cosine nearest class mean, ``presets.SUPPORT_INIT``) is the sanity
run's reference row; it is not in :data:`PEERS` (benchmarks take it from the presets).

A sanity run (synthetic clusters, batched vs single episodes, and seeded balanced 5-way episodes
of a saved feature file: a ``torch.save`` dict with ``features [N, D]`` and ``labels [N]``)::

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python benchmarks/peers.py \\
        --features /path/to/feats_mini.pt --episodes 100
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from anyshot.methods.presets import SUPPORT_INIT

__all__ = [
    "PEERS",
    "PeerMethod",
    "alpha_tim",
    "bd_cspn",
    "paddle",
    "support_init",
    "tim",
]

#: ``(support [E, S, D], targets [E, S], query [E, Q, D], ways K) -> [E, Q, K]`` query scores.
PeerMethod = Callable[[Tensor, Tensor, Tensor, int], Tensor]


def _one_hot(targets: Tensor, ways: int, like: Tensor) -> Tensor:
    """``[E, S]`` class indices -> ``[E, S, K]`` one-hot rows of ``like``'s dtype and device."""
    return F.one_hot(targets.to(like.device), ways).to(like.dtype)


def _class_means(rows: Tensor, one_hot: Tensor) -> Tensor:
    """``[E, S, D]`` rows, ``[E, S, K]`` one-hot -> ``[E, K, D]`` per-class means (no renorm)."""
    return one_hot.transpose(1, 2) @ rows / one_hot.sum(1).unsqueeze(-1)


def _cosine(rows: Tensor, prototypes: Tensor) -> Tensor:
    """``[E, N, D]`` rows, ``[E, K, D]`` prototypes -> ``[E, N, K]`` cosine similarities."""
    return F.normalize(rows, dim=-1) @ F.normalize(prototypes, dim=-1).transpose(1, 2)


def _half_neg_sq_dist(rows: Tensor, prototypes: Tensor, rows_sq: Tensor) -> Tensor:
    """``[E, N, D]``, ``[E, K, D]``, ``[E, N, 1]`` (``|x|^2``, computed once per method) ->
    ``[E, N, K]``: ``-||x - w||^2 / 2`` expanded as ``<x, w> - |w|^2 / 2 - |x|^2 / 2`` (as the
    authors' TIM / PADDLE code computes it)."""
    return (
        rows @ prototypes.transpose(1, 2)
        - 0.5 * (prototypes**2).sum(-1).unsqueeze(1)
        - 0.5 * rows_sq
    )


def _sq_norms(rows: Tensor) -> Tensor:
    """``[E, N, D] -> [E, N, 1]`` squared row norms."""
    return (rows**2).sum(-1, keepdim=True)


def _entropy(probs: Tensor) -> Tensor:
    """Shannon entropy along the last axis: ``[..., K] -> [...]``."""
    return -(probs * torch.log(probs + 1e-12)).sum(-1)


def _alpha_entropy(probs: Tensor, alpha: Tensor) -> Tensor:
    """Tsallis alpha-entropy ``(1 - sum_k p_k^alpha) / (alpha - 1)`` along the last axis.

    ``probs [E, ..., K]``; ``alpha [E]`` (one order per episode) -> ``[E, ...]``.
    """
    order = alpha.view(-1, *([1] * (probs.dim() - 1)))
    return (1 - (probs + 1e-12).pow(order).sum(-1)) / (order.squeeze(-1) - 1)


def _empty(query: Tensor, ways: int) -> Tensor:
    """``[E, 0, K]`` scores for an episode batch without queries."""
    return query.new_zeros(query.shape[0], 0, ways)


def tim(support: Tensor, targets: Tensor, query: Tensor, ways: int) -> Tensor:
    """TIM-GD with easyfsl's benchmark settings -> ``[E, Q, K]`` logits ``10 cos(q, w_k)``.

    Boudiaf et al., "Transductive Information Maximization for Few-Shot Learning", NeurIPS 2020
    (arXiv 2008.11297). Read: easyfsl 1.5.0 ``easyfsl/methods/tim.py`` and its benchmark
    configuration ``scripts/methods_configs.json`` (``tim/default``); the authors' TIM-GD in
    ``oveilleux/Realistic_Transductive_Few_Shot`` ``src/methods/tim.py``.

    Settings (easyfsl's config): features L2-normalised (``feature_normalization: 2``, no
    centring); one weight vector per class initialised at the mean of the class's unit support
    rows; logits ``T cos(x, w_k)`` with ``T = 10``; 50 Adam steps (lr 1e-3) on the weights only,
    each on the whole loss ``1 CE(support) - (1 H(mean_q p) - 0.5 mean_q H(p))`` (CE averaged
    over the support, entropies in nats). The authors' TIM-GD differs (Euclidean logits
    ``-15 ||x - w_k||^2 / 2``, 1000 Adam steps of lr 1e-4); this is the configuration easyfsl's
    published benchmark runs.

    Args:
        support: ``[E, S, D]`` support embeddings.
        targets: ``[E, S]`` class indices ``0..K-1``, every class present.
        query: ``[E, Q, D]`` query embeddings.
        ways: ``K``.
    """
    if query.shape[1] == 0:
        return _empty(query, ways)
    temperature, steps, lr = 10.0, 50, 1e-3
    ce_weight, marginal_weight, conditional_weight = 1.0, 1.0, 0.5
    with torch.inference_mode(False), torch.enable_grad():
        s = F.normalize(support.detach().clone().float(), dim=-1)
        q = F.normalize(query.detach().clone().float(), dim=-1)
        one_hot = _one_hot(targets, ways, s)
        weight = _class_means(s, one_hot).requires_grad_(True)
        optimizer = torch.optim.Adam([weight], lr=lr)
        for _ in range(steps):
            support_logits = temperature * _cosine(s, weight)
            probs = (temperature * _cosine(q, weight)).softmax(-1)
            ce = -(one_hot * support_logits.log_softmax(-1)).sum(-1).mean(-1)  # [E]
            conditional = _entropy(probs).mean(-1)  # [E]
            marginal = _entropy(probs.mean(1))  # [E]
            loss = ce_weight * ce - (marginal_weight * marginal - conditional_weight * conditional)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()  # episodes are independent: each weight sees its own loss
            optimizer.step()
        with torch.no_grad():
            return (temperature * _cosine(q, weight)).detach()


def alpha_tim(
    support: Tensor, targets: Tensor, query: Tensor, ways: int, *, steps: int = 1000
) -> Tensor:
    """alpha-TIM with the authors' settings -> ``[E, Q, K]`` logits ``-15 ||q - w_k||^2 / 2``.

    Veilleux et al., "Realistic Evaluation of Transductive Few-Shot Learning", NeurIPS 2021
    (arXiv 2204.11181). Read: the authors' ``oveilleux/Realistic_Transductive_Few_Shot``
    ``src/methods/tim.py`` (``ALPHA_TIM``) and ``config/dirichlet/methods_config/alpha_tim.yaml``.

    Settings (the authors' config): features L2-normalised (no centring); class weights
    initialised at the mean of the class's unit support rows; logits ``-T ||x - w_k||^2 / 2``
    with ``T = 15``; 1000 Adam steps (lr 1e-4) on the weights, each on the whole loss
    ``1 CE(support) - (1 H_a(mean_q p) - 1 mean_q H_a(p))`` with the Shannon cross-entropy on the
    support and Tsallis alpha-entropies ``H_a(p) = (1 - sum_k p_k^a) / (a - 1)`` for both query
    terms. ``a`` as the code's ``use_tuned_alpha_values``: 2 at 1 shot, 7 at 5 or more shots,
    the config's 5 otherwise (2-4 shots); the shot count of an episode is its smallest class's
    support count, so ``a`` is chosen per episode.

    Args:
        support: ``[E, S, D]`` support embeddings.
        targets: ``[E, S]`` class indices ``0..K-1``, every class present.
        query: ``[E, Q, D]`` query embeddings.
        ways: ``K``.
        steps: Adam steps (1000 in the paper's code).
    """
    if query.shape[1] == 0:
        return _empty(query, ways)
    temperature, lr = 15.0, 1e-4
    with torch.inference_mode(False), torch.enable_grad():
        s = F.normalize(support.detach().clone().float(), dim=-1)
        q = F.normalize(query.detach().clone().float(), dim=-1)
        one_hot = _one_hot(targets, ways, s)
        shots = one_hot.sum(1).amin(-1)  # [E]: the smallest class's support count
        alpha = torch.where(
            shots <= 1, 2.0, torch.where(shots >= 5, 7.0, 5.0)
        )  # [E] Tsallis order per episode
        s_sq, q_sq = _sq_norms(s), _sq_norms(q)
        weight = _class_means(s, one_hot).requires_grad_(True)
        optimizer = torch.optim.Adam([weight], lr=lr)
        for _ in range(steps):
            support_logits = temperature * _half_neg_sq_dist(s, weight, s_sq)
            probs = (temperature * _half_neg_sq_dist(q, weight, q_sq)).softmax(-1)
            ce = -(one_hot * torch.log(support_logits.softmax(-1) + 1e-12)).sum(-1).mean(-1)
            marginal = _alpha_entropy(probs.mean(1), alpha)  # [E]
            conditional = _alpha_entropy(probs, alpha).mean(-1)  # [E]
            loss = ce - (marginal - conditional)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
        with torch.no_grad():
            return (temperature * _half_neg_sq_dist(q, weight, q_sq)).detach()


def paddle(support: Tensor, targets: Tensor, query: Tensor, ways: int) -> Tensor:
    """PADDLE (closed-form MM) -> ``[E, Q, K]`` log soft assignments ``log u`` of the queries.

    Martin et al., "Towards Practical Few-shot Query Sets: Transductive Minimum Description
    Length Inference", NeurIPS 2022 (arXiv 2210.14545). Read: the authors'
    ``SegoleneMartin/PADDLE`` ``src/methods/paddle.py`` (``PADDLE``, ``MinMaxScaler``) and
    ``config/mini/resnet18/methods_config/paddle.yaml``.

    Features as the code: each dimension min-max scaled by the episode's query range
    (``(x - min_q) / (max_q - min_q)``, a zero range left unscaled; the code subtracts the
    unscaled minimum, a per-dimension shift that no distance below sees); no L2 norm, no
    temperature. Prototypes ``w_k`` start at the support class means; ``v = 0``. Each of the
    1000 iterations (the mini-ImageNet config; its tiered / iNat configs use 100):

    * ``u = softmax_k(-||x - w_k||^2 / 2 + (lambda / Q) v_k)`` for every query ``x``;
    * ``v = log(mean_q u + 1e-6) + 1`` (the MM linearisation of the class-size penalty
      ``-lambda sum_k pi_k log pi_k``, ``pi = mean_q u``);
    * ``w_k = (sum_q u_qk x_q + sum_{s in class k} x_s) / (sum_q u_qk + n_k)``.

    ``lambda = Q``, the number of queries, as the paper sets it (the config's 75 is its 75
    queries), so the coefficient on ``v`` is ``lambda / Q = 1``. Returns ``log u`` of the last
    iteration (its argmax is the code's prediction).

    Args:
        support: ``[E, S, D]`` support embeddings.
        targets: ``[E, S]`` class indices ``0..K-1``, every class present.
        query: ``[E, Q, D]`` query embeddings.
        ways: ``K``.
    """
    n_query = query.shape[1]
    if n_query == 0:
        return _empty(query, ways)
    iterations = 1000
    lam = float(n_query)  # lambda = Q, the paper's choice
    penalty = lam / n_query  # the coefficient on v
    with torch.no_grad():
        s = support.float()
        q = query.float()
        low = q.amin(1, keepdim=True)
        span = q.amax(1, keepdim=True) - low
        span = torch.where(span == 0, torch.ones_like(span), span)
        s = (s - low) / span
        q = (q - low) / span
        one_hot = _one_hot(targets, ways, s)
        support_sums = one_hot.transpose(1, 2) @ s  # [E, K, D]
        counts = one_hot.sum(1)  # [E, K]
        w = support_sums / counts.unsqueeze(-1)
        q_sq = _sq_norms(q)
        v = q.new_zeros(q.shape[0], ways)
        scores = q.new_zeros(q.shape[0], n_query, ways)
        for _ in range(iterations):
            scores = _half_neg_sq_dist(q, w, q_sq) + penalty * v.unsqueeze(1)
            u = scores.softmax(-1)  # [E, Q, K]
            v = torch.log(u.mean(1) + 1e-6) + 1
            w = (u.transpose(1, 2) @ q + support_sums) / (u.sum(1) + counts).unsqueeze(-1)
        return scores.log_softmax(-1)


def bd_cspn(
    support: Tensor, targets: Tensor, query: Tensor, ways: int, *, eps: float = 10.0
) -> Tensor:
    """BD-CSPN -> ``[E, Q, K]`` logits ``eps cos(q, P'_k)`` to the rectified prototypes.

    Liu, Song and Qin, "Prototype Rectification for Few-Shot Learning", ECCV 2020
    (arXiv 1911.10713). Read: easyfsl 1.5.0 ``easyfsl/methods/bd_cspn.py`` and
    ``scripts/methods_configs.json`` (``bd_cspn/default``); the reproductions in
    ``oveilleux/Realistic_Transductive_Few_Shot`` / ``SegoleneMartin/PADDLE``
    ``src/methods/bdcspn.py``.

    Settings: features L2-normalised (easyfsl's ``feature_normalization: 2``; the reproductions'
    CL2N centres on the base-training mean, which a few-shot episode does not have). Basic
    prototypes ``P_k`` = class means of the unit support rows. Support-query shift: every unit
    query row is moved by ``mean(support) - mean(query)``; each shifted query is pseudo-labelled
    by its most cosine-similar ``P_k`` (all queries, as easyfsl; the paper keeps the top-Z
    confident). Rectified ``P'_k = sum_i w_ik x_i`` over class ``k``'s support rows and shifted
    queries pseudo-labelled ``k``, with ``w_ik = softmax_i(eps cos(x_i, P_k))`` normalised within
    the class, ``eps = 10`` (the paper's value; easyfsl 1.5.0's code weighs by ``exp(cos)``,
    i.e. ``eps = 1``: ``bd_cspn(..., eps=1.0)`` gives its predictions).
    Prediction: cosine nearest rectified prototype of the unshifted unit query rows (as easyfsl
    and the reproductions), reported as ``eps cos``.

    Args:
        support: ``[E, S, D]`` support embeddings.
        targets: ``[E, S]`` class indices ``0..K-1``, every class present.
        query: ``[E, Q, D]`` query embeddings.
        ways: ``K``.
        eps: the weights' inverse temperature.
    """
    if query.shape[1] == 0:
        return _empty(query, ways)
    with torch.no_grad():
        s = F.normalize(support.float(), dim=-1)
        q = F.normalize(query.float(), dim=-1)
        one_hot = _one_hot(targets, ways, s)
        prototypes = _class_means(s, one_hot)  # [E, K, D]
        shifted = q + (s.mean(1, keepdim=True) - q.mean(1, keepdim=True))
        support_sim = eps * _cosine(s, prototypes)  # [E, S, K]
        query_sim = eps * _cosine(shifted, prototypes)  # [E, Q, K]
        pseudo = F.one_hot(query_sim.argmax(-1), ways).to(s.dtype)  # [E, Q, K]
        members = torch.cat([one_hot, pseudo], 1) > 0  # [E, S + Q, K]
        sims = torch.cat([support_sim, query_sim], 1).masked_fill(~members, float("-inf"))
        weights = sims.softmax(1)  # within each class (every class has its support rows)
        rectified = weights.transpose(1, 2) @ torch.cat([s, shifted], 1)  # [E, K, D]
        return eps * _cosine(q, rectified)


def support_init(support: Tensor, targets: Tensor, query: Tensor, ways: int) -> Tensor:
    """anyshot's support-based initialisation -> ``[E, Q, K]`` logits (the reference row).

    ``anyshot.methods.presets.SUPPORT_INIT`` (Dhillon et al., ICLR 2020, section 3.1): cosine
    nearest class mean on ReLU'd, L2-normalised embeddings, logits ``cos / 0.1``.

    Args:
        support: ``[E, S, D]`` support embeddings.
        targets: ``[E, S]`` class indices ``0..K-1``, every class present.
        query: ``[E, Q, D]`` query embeddings.
        ways: ``K``.
    """
    return SUPPORT_INIT.fit_features(support, targets, query, ways=ways).query_logits


#: Peer name -> method (the names the benchmark tables use).
PEERS: dict[str, PeerMethod] = {
    "tim": tim,
    "alpha-tim": alpha_tim,
    "paddle": paddle,
    "bd-cspn": bd_cspn,
}


# --- sanity run -------------------------------------------------------------------------------


def gaussian_episodes(
    episodes: int, ways: int, shots: int, queries: int, dim: int, seed: int, spread: float = 1.0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Synthetic episodes: ``(support [E, K*shots, D], targets, query [E, K*queries, D], query
    targets)``, way-major rows; class ``k`` of episode ``e`` is ``N(mu_ek, spread^2 I)`` with
    ReLU'd ``N(0, I)`` centres (non-negative like pooled CNN features) plus an offset of 3.

    PADDLE has no temperature: it needs class gaps of several nats in ``||x - w||^2 / 2`` after its
    min-max scaling, which these clusters reach only in high dimension (at ``D = 32`` or ``128``
    with ``spread = 1`` it merges every episode's queries into one class; ``D = 512`` does not).
    """
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(episodes, ways, dim, generator=g).relu() + 3.0

    def draw(per_class: int) -> tuple[Tensor, Tensor]:
        labels = torch.arange(ways).repeat_interleave(per_class)
        rows = centres[:, labels] + spread * torch.randn(episodes, len(labels), dim, generator=g)
        return rows, labels.expand(episodes, -1).contiguous()

    support, targets = draw(shots)
    query, query_targets = draw(queries)
    return support, targets, query, query_targets


def feature_episodes(
    features: Tensor,
    labels: np.ndarray,
    ways: int,
    shots: int,
    per_class: int,
    episodes: int,
    seed: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Seeded balanced episodes of a feature matrix ``[N, D]``: episode ``e`` draws with
    ``PCG64([seed, e])`` ``ways`` classes, then a permutation of each class's rows (the first
    ``shots`` are support, the next ``per_class`` queries). Returns ``(support [E, K*shots, D],
    targets, query [E, K*per_class, D], query targets)``, way-major."""
    classes = np.unique(labels)
    members = {int(c): np.flatnonzero(labels == c) for c in classes}
    sup, tgt, qry, qtg = [], [], [], []
    for e in range(episodes):
        rng = np.random.Generator(np.random.PCG64([seed, e]))
        chosen = rng.choice(classes, size=ways, replace=False)
        s_idx: list[int] = []
        q_idx: list[int] = []
        for c in chosen:
            perm = rng.permutation(members[int(c)])
            s_idx += perm[:shots].tolist()
            q_idx += perm[shots : shots + per_class].tolist()
        sup.append(s_idx)
        qry.append(q_idx)
        tgt.append(np.repeat(np.arange(ways), shots))
        qtg.append(np.repeat(np.arange(ways), per_class))
    return (
        features[torch.as_tensor(np.array(sup))],
        torch.as_tensor(np.array(tgt)),
        features[torch.as_tensor(np.array(qry))],
        torch.as_tensor(np.array(qtg)),
    )


def accuracy(scores: Tensor, query_targets: Tensor) -> float:
    """Mean per-episode accuracy (%) of ``scores [E, Q, K]`` against ``[E, Q]`` targets."""
    return 100.0 * float((scores.argmax(-1) == query_targets).float().mean())


def main() -> None:
    """Synthetic and batched-vs-single checks, then (``--features``) balanced 5-way episodes
    (15 queries per class; the ``k``-shot setting draws with seed ``--seed + k``)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--features", help="torch.save dict with features [N, D], labels [N]")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per setting")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode draws")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    for shots in (1, 5):
        support, targets, query, query_targets = gaussian_episodes(
            20, 5, shots, 15, 512, shots, 1.5
        )
        for name, method in {**PEERS, "support-init": support_init}.items():
            batched = method(support, targets, query, 5)
            single = torch.cat(
                [
                    method(support[i : i + 1], targets[i : i + 1], query[i : i + 1], 5)
                    for i in range(4)
                ]
            )
            gap = float((batched[:4] - single).abs().max())
            print(
                f"synthetic 5w{shots}s x20 {name:13s} {accuracy(batched, query_targets):5.1f} "
                f"(chance 20.0)  max |batched - single| (4 episodes) {gap:.1e}"
            )
    if args.features is None:
        return
    blob = torch.load(args.features)
    features = blob["features"].reshape(len(blob["labels"]), -1).float()
    labels = blob["labels"].numpy()
    for shots in (1, 5):
        episode = feature_episodes(features, labels, 5, shots, 15, args.episodes, args.seed + shots)
        for name, method in {**PEERS, "support-init": support_init}.items():
            start = time.perf_counter()
            scores = method(*episode[:3], 5)
            per_episode = (scores.argmax(-1) == episode[3]).float().mean(1) * 100
            half = 1.96 * float(per_episode.std()) / len(per_episode) ** 0.5
            print(
                f"5w{shots}s x{args.episodes} {name:13s} {float(per_episode.mean()):5.1f} "
                f"+- {half:.1f}  ({time.perf_counter() - start:.1f} s)"
            )


if __name__ == "__main__":
    main()
