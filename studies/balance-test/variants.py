"""Which balance test? The default's first run decides whether the balance term trains a second
run (``adaptive_balance``); on Omniglot one-shot its hard predicted counts often fail the test
on balanced queries. Variants of ``anyshot.methods.head.queries_look_balanced`` patched in,
then ``benchmarks/realistic_grid.py`` run with the remaining arguments (val only).

--variant:
  hard        today's: looks_balanced(hard counts of the first run's argmax)
  shrinkS     hard counts, BALANCED_SHRINKAGE = S (today 0.95)
  soft        looks_balanced(sum of the first run's softmax probabilities)
  csoft       soft counts of the calibrated probabilities (logits / the default's tau)
  clrQ        lrQ on the calibrated probabilities
  lrQ         likelihood ratio of the ML class proportions (EM on the first run's softmax
              probabilities) against uniform ones: balanced when 2 log LR is below the Q
              quantile of chi2(K - 1)
Prints the share of episodes that pass, per cell (recommended's calls).
"""

from __future__ import annotations

import sys

import torch
from scipy.stats import chi2

import anyshot.methods.balance as balance
import anyshot.methods.head as head
import realistic_grid
from anyshot.methods.presets import RECOMMENDED

ORIGINAL = head.queries_look_balanced
CALLS: list[torch.Tensor] = []


def ml_log_ratio(probs: torch.Tensor, steps: int = 50) -> torch.Tensor:
    """``[E, Q, K]`` probabilities -> ``[E]`` log LR of EM proportions against uniform."""
    probs = probs.double()
    ways = probs.shape[-1]
    pi = torch.full(probs.shape[::2], 1.0 / ways, dtype=torch.float64)
    for _ in range(steps):
        r = pi[:, None] * probs
        r = r / r.sum(-1, keepdim=True)
        pi = r.mean(1)
    return (torch.log((pi[:, None] * probs).sum(-1) * ways)).sum(-1)


def calibrated(first_logits, rows):
    """``[E, Q, K]`` probabilities of the first run's logits divided by the default's
    confidence temperature (``RECOMMENDED.confidence_temperatures``)."""
    tau = RECOMMENDED.confidence_temperatures(rows, first_logits)
    return (first_logits.double().cpu() / tau[:, None, None]).softmax(-1)


def make(variant: str):
    def patched(training, first_logits, rows):
        if variant == "hard":
            out = ORIGINAL(training, first_logits, rows)
        elif variant.startswith("shrink"):
            old = balance.BALANCED_SHRINKAGE
            balance.BALANCED_SHRINKAGE = float(variant[6:])
            try:
                out = ORIGINAL(training, first_logits, rows)
            finally:
                balance.BALANCED_SHRINKAGE = old
        elif variant == "soft":
            counts = first_logits.float().softmax(-1).sum(1)
            out = balance.looks_balanced(counts).cpu()
        elif variant == "csoft":
            counts = calibrated(first_logits, rows).sum(1)
            out = balance.looks_balanced(counts).cpu()
        elif variant.startswith("clr"):
            q = float(variant[3:])
            stat = 2 * ml_log_ratio(calibrated(first_logits, rows))
            out = stat <= chi2.ppf(q, first_logits.shape[-1] - 1)
        elif variant.startswith("lr"):
            q = float(variant[2:])
            ways = first_logits.shape[-1]
            stat = 2 * ml_log_ratio(first_logits.float().softmax(-1).cpu())
            out = stat <= chi2.ppf(q, ways - 1)
        else:
            raise SystemExit(f"unknown variant {variant}")
        CALLS.append(out.float())
        return out

    return patched


def main() -> None:
    argv = sys.argv[1:]
    variant = argv[argv.index("--variant") + 1]
    del argv[argv.index("--variant") : argv.index("--variant") + 2]
    head.queries_look_balanced = make(variant)
    run_cell = realistic_grid.run_cell

    def counted(*args, **kwargs):
        CALLS.clear()
        out = run_cell(*args, **kwargs)
        share = float(torch.cat(CALLS).mean()) if CALLS else float("nan")
        print(f"  [{variant}] balance test passed in {100 * share:.1f}% of calls", flush=True)
        return out

    realistic_grid.run_cell = counted
    sys.argv = [sys.argv[0], *argv]
    realistic_grid.main()


if __name__ == "__main__":
    main()
