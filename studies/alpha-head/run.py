"""Tsallis (alpha) entropies inside the default head: a validation study (VALIDATION classes only).

alpha-TIM beats the default on present-class cells with 3 or 5 present classes. This study asks
whether the default's head gains from alpha-TIM's terms. ``--order A`` replaces the Shannon
entropies of the query terms (the mean prediction entropy and the balance term's marginal) by
Tsallis entropies ``(1 - sum p^A) / (A - 1)`` (a study-only patch of ``query_loss``); heads are
named as in ``studies/present-gate/run_heads.py`` with ``@A`` appended, and stored beside that
study's predictions so ``derive.py`` / ``compare_peer.py`` read them.

    cd studies/present-gate
    export OMP_NUM_THREADS=1 PYTHONPATH=$PWD/../../src:$PWD/../safe-gate ANYSHOT_STUDY_OUT=$PWD/out
    python ../alpha-head/run.py --order 2 --heads "raw:entropy_weight=0.5" --cells pres,bal,dir
"""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

import anyshot.methods.head as head_module
from anyshot.methods import objective

ORDER = 1.0


def tsallis(p: torch.Tensor, order: float) -> torch.Tensor:
    """Tsallis entropy of ``[..., K]`` probabilities -> ``[...]`` (Shannon at order 1)."""
    if order == 1.0:
        return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)
    return (1 - p.clamp_min(1e-12).pow(order).sum(-1)) / (order - 1)


def query_loss(logits, weights, n_query, log_prior, *, balance_gradient=None):
    """``objective.query_loss`` with Tsallis entropies of order ``ORDER``."""
    assert balance_gradient is None
    p = F.softmax(logits, dim=-1)
    loss = weights.entropy * tsallis(p, ORDER).sum() / n_query
    if weights.balance > 0:
        loss = loss - weights.balance * tsallis(p.mean(-2), ORDER).sum()
    responsibilities = torch.zeros_like(log_prior)
    if weights.likelihood > 0:
        joint = logits + log_prior.unsqueeze(-2)
        loss = loss - weights.likelihood * torch.logsumexp(joint, dim=-1).sum() / n_query
        responsibilities = F.softmax(joint.detach(), dim=-1).sum(-2)
    return loss, responsibilities


def main() -> None:
    global ORDER
    ap = argparse.ArgumentParser()
    ap.add_argument("--order", type=float, required=True)
    args, rest = ap.parse_known_args()
    ORDER = args.order
    head_module.query_loss = query_loss
    import run_heads  # studies/present-gate

    original = run_heads.method
    run_heads.method = lambda name: original(name.split("@")[0])
    sys.argv = [sys.argv[0], *rest]
    # name every head with its order so stored predictions never mix orders
    heads_at = sys.argv.index("--heads") + 1
    sys.argv[heads_at] = ";".join(f"{h}@{ORDER:g}" for h in sys.argv[heads_at].split(";"))
    run_heads.main()


if __name__ == "__main__":
    assert objective.query_loss is not None
    main()
