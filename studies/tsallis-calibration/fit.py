"""Fit a calibration rule for the episodes the Tsallis head answers (VALIDATION classes).

Reads ``out/tc/*.pt`` (``collect.py``). Every episode not answered by the Tsallis head keeps
the product's calibration (the guard's support-init answers ``fallback_temperature``, the
others ``RECOMMENDED``'s rule); the Tsallis episodes get ``log tau = a + b log shots + c s +
d h`` with a chosen subset of ``(b, c, d)`` free, fitted by minimising their queries' NLL with
every cell holding Tsallis episodes weighted equally. Prints per cell: accuracy, share of
Tsallis episodes, ECE (15 bins) with the product's rule on every episode ("before") and with
each candidate.

    cd studies/present-gate && python ../tsallis-calibration/fit.py
"""
from __future__ import annotations

import glob
import math
import os

import torch

from anyshot.calibration import expected_calibration_error
from anyshot.methods import presets

OUT = os.environ.get("ANYSHOT_STUDY_OUT", "out")
R = presets.RECOMMENDED
CANDIDATES = {"const": (), "shots": ("b",), "shots+h": ("b", "d"), "shots+s+h": ("b", "c", "d")}


def product_log_tau(cell: dict) -> torch.Tensor:
    """``[E]``: the product's log tau of each episode (trained rule, or the guard's)."""
    rule = (math.log(R.confidence_temperature) + R.confidence_shots_power * math.log(cell["shots"])
            + R.confidence_similarity_slope * cell["s"] + R.confidence_query_slope * cell["h"])
    guard = cell["fallback"] & ~cell["gated"]
    return torch.where(guard, torch.tensor(math.log(R.fallback_temperature), dtype=torch.float64), rule)


def features(cell: dict) -> torch.Tensor:
    """``[E, 4]``: 1, log shots, s, h."""
    e = cell["s"].shape[0]
    return torch.stack([torch.ones(e, dtype=torch.float64), torch.full((e,), math.log(cell["shots"]), dtype=torch.float64), cell["s"], cell["h"]], 1)


def fit(cells: dict, free: tuple[str, ...]) -> torch.Tensor:
    """``[4]`` parameters (a, b, c, d) minimising the Tsallis episodes' mean NLL, cells equal."""
    use = torch.tensor([True, "b" in free, "c" in free, "d" in free])
    theta = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    data = []
    for cell in cells.values():
        t = cell["tsallis"]
        if t.any():
            data.append((features(cell)[t], cell["logits"][t].double(), cell["targets"][t]))
    opt = torch.optim.LBFGS([theta], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = 0.0
        for x, logits, y in data:
            log_tau = x @ (theta * use)
            lp = (logits / log_tau.exp()[:, None, None]).log_softmax(-1)
            loss = loss + torch.nn.functional.nll_loss(lp.flatten(0, 1), y.flatten())
        loss = loss / len(data)
        loss.backward()
        return loss

    opt.step(closure)
    return (theta * use).detach()


def ece(cell: dict, log_tau: torch.Tensor) -> float:
    p = (cell["logits"].double() / log_tau.exp()[:, None, None]).softmax(-1)
    conf, pred = p.max(-1)
    return 100 * expected_calibration_error(conf.flatten(), (pred == cell["targets"]).flatten())


def main() -> None:
    cells = {os.path.basename(p)[:-3]: torch.load(p) for p in sorted(glob.glob(f"{OUT}/tc/*.pt"))}
    thetas = {name: fit(cells, free) for name, free in CANDIDATES.items()}
    shipped = (R.tsallis_confidence_temperature, R.tsallis_confidence_shots_power)
    thetas["shipped"] = torch.tensor([math.log(shipped[0]), shipped[1], 0.0, 0.0], dtype=torch.float64)
    for name, th in thetas.items():
        print(f"{name:10s} a b c d = {', '.join(f'{v:.3f}' for v in th.tolist())}")
    print(f"{len(cells)} cells, {sum(int(c['tsallis'].sum()) for c in cells.values())} Tsallis episodes of "
          f"{sum(len(c['tsallis']) for c in cells.values())}; shipped: tau = {shipped[0]} * shots ** {shipped[1]}")
    print(f"{'cell':28s} {'acc':>6s} {'ts':>5s} {'before':>7s} " + " ".join(f"{n:>9s}" for n in thetas))
    rows = []
    for name, cell in cells.items():
        if not cell["tsallis"].any():
            continue
        base = product_log_tau(cell)
        acc = 100 * (cell["logits"].argmax(-1) == cell["targets"]).float().mean()
        eces = [ece(cell, torch.where(cell["tsallis"], features(cell) @ th, base)) for th in thetas.values()]
        rows.append([ece(cell, base), *eces])
        print(f"{name:28s} {acc:6.1f} {cell['tsallis'].float().mean():5.2f} {rows[-1][0]:7.1f} " + " ".join(f"{v:9.1f}" for v in eces))
    cols = list(zip(*rows))
    print(f"{'mean':28s} {'':6s} {'':5s} " + " ".join(f"{sum(c) / len(c):9.2f}" for c in cols))
    print(f"{'max':28s} {'':6s} {'':5s} " + " ".join(f"{max(c):9.2f}" for c in cols))


if __name__ == "__main__":
    main()
