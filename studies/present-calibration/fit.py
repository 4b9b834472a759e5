"""Fit confidence-temperature rules per answer path on the collected VALIDATION episodes.

``collect.py`` stored, per episode of the ``studies/safe-gate/study2.py`` cells, the default's
and support-init's uncalibrated logits and which path answered: the first head, the gate's
inductive head (``gated``), the Tsallis head, or the guard's support-init answer. A rule is
``log tau = a + sum_j b_j f_j`` over per-episode features (``log:shots``, ``log:ways``, ``s``,
``h``, ``h0``); each path's parameters minimise its queries' NLL with every cell weighted
equally, plus ``--gap`` times the mean squared gap between a cell's mean confidence and accuracy
on that path's queries (the shipped rule's objective, ``studies/calibration-rule/``).

    python fit.py /tmp/pc/pc [--gap 10]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from anyshot.calibration import calibration_bins

PATHS = ("first", "gated", "tsallis", "guard")


class Cell:
    """One cell's queries, flattened: logits ``[N, K]`` (default and support-init), targets
    ``[N]``, episode ``[N]``, per-episode path and features."""

    def __init__(self, name: str, raw: dict) -> None:
        self.name = name
        self.domain, self.kind = raw["domain"], raw["kind"]
        self.ways, self.shots = raw["ways"], raw["shots"]
        eps, q = raw["targets"].shape
        self.episode = torch.arange(eps).repeat_interleave(q)
        self.logits = raw["logits"].double().reshape(eps * q, -1)
        self.base = raw["support_init"].double().reshape(eps * q, -1)
        self.targets = raw["targets"].reshape(-1).long()
        path = torch.zeros(eps, dtype=torch.long)  # first
        path[raw["gated"]] = 1
        path[raw["tsallis"]] = 2
        path[raw["fallback"] & ~raw["gated"]] = 3
        self.path = path[self.episode]
        one = torch.ones(eps, dtype=torch.float64)
        feats = {
            "log:shots": one * math.log(self.shots), "log:ways": one * math.log(self.ways),
            "s": raw["s"].double(), "h": raw["h"].double(), "h0": raw["h0"].double(),
        }
        self.feats = {k: v[self.episode] for k, v in feats.items()}
        self.correct = self.logits.argmax(-1) == self.targets
        self.base_correct = self.base.argmax(-1) == self.targets

    def ece(self, tau: torch.Tensor, base: bool = False) -> float:
        logits, correct = (self.base, self.base_correct) if base else (self.logits, self.correct)
        conf = (logits / tau[:, None]).softmax(-1).amax(-1)
        return 100 * calibration_bins(conf, correct).ece()


class Rule:
    """``log tau = a + sum_j b_j f_j``."""

    def __init__(self, features: tuple[str, ...], params: list[float] | None = None) -> None:
        self.features = features
        self.params = torch.tensor(params or [0.0] * (len(features) + 1), dtype=torch.float64)

    def log_tau(self, cell: Cell, params: torch.Tensor | None = None) -> torch.Tensor:
        p = self.params if params is None else params
        out = p[0] * torch.ones_like(cell.feats["s"])
        for j, f in enumerate(self.features):
            out = out + p[j + 1] * cell.feats[f]
        return out

    def __str__(self) -> str:
        terms = " ".join(f"{b:+.3f} {f}" for b, f in zip(self.params[1:].tolist(), self.features))
        return f"log tau = {self.params[0]:.3f} {terms}  (tau0 {math.exp(self.params[0]):.3f})"


def fit(rule: Rule, cells: list[Cell], select, base: bool, gap: float, min_queries: int = 30) -> Rule:
    """Minimise the mean over cells of the selected queries' NLL (+ gap term) by L-BFGS."""
    parts = []
    for c in cells:
        m = select(c)
        if int(m.sum()) >= min_queries:
            parts.append((c, m))
    params = rule.params.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        total = torch.zeros((), dtype=torch.float64)
        for c, m in parts:
            logits = (c.base if base else c.logits)[m]
            correct = (c.base_correct if base else c.correct)[m]
            scaled = logits / rule.log_tau(c, params)[m].exp()[:, None]
            nll = torch.nn.functional.cross_entropy(scaled, c.targets[m])
            conf = scaled.softmax(-1).amax(-1)
            total = total + nll + gap * (conf.mean() - correct.double().mean()) ** 2
        value = total / len(parts)
        value.backward()
        return value

    opt.step(loss)
    return Rule(rule.features, params.detach().tolist())


SHIPPED_FIRST = Rule(("log:shots", "s", "h"), [math.log(0.175), -0.60, 2.86, 1.07])
SHIPPED_TSALLIS = Rule(("log:shots",), [math.log(3.9), -0.35])
SHIPPED_SI = Rule((), [math.log(0.46)])


def default_tau(cell: Cell, first: Rule, gated: Rule, tsallis: Rule, guard: Rule) -> torch.Tensor:
    rules = (first, gated, tsallis, guard)
    taus = torch.stack([r.log_tau(cell) for r in rules], 1).exp()  # [N, 4]
    return taus.gather(1, cell.path[:, None])[:, 0]


def group(cell: Cell) -> str:
    if cell.kind == "present":
        return f"{cell.domain} present"
    if cell.ways == 5 and cell.kind in ("balanced", "dirichlet"):
        return f"{cell.domain} 5-way standard"
    return f"{cell.domain} {cell.kind}"


def report(title: str, cells: list[Cell], eces: dict[str, list[float]]) -> None:
    print(f"\n## {title}\n")
    names = list(eces)
    print("| group (cells) | " + " | ".join(f"{n} mean / max" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    groups = sorted({group(c) for c in cells})
    for g in groups + ["all"]:
        idx = [i for i, c in enumerate(cells) if g == "all" or group(c) == g]
        row = [f"{sum(eces[n][i] for i in idx) / len(idx):.2f} / {max(eces[n][i] for i in idx):.1f}" for n in names]
        print(f"| {g} ({len(idx)}) | " + " | ".join(row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--gap", type=float, default=10.0)
    ap.add_argument("--cells", action="store_true", help="print every cell")
    args = ap.parse_args()
    cells = [Cell(p.stem, torch.load(p)) for p in sorted(Path(args.folder).glob("*.pt"))]
    print(f"{len(cells)} cells, {sum(len(c.targets) for c in cells)} queries;",
          "path shares (episodes):", {n: round(float(sum((c.path == i).double().mean() for c in cells) / len(cells)), 3) for i, n in enumerate(PATHS)})
    one = lambda c: torch.ones_like(c.correct)  # noqa: E731
    path = lambda k: (lambda c: c.path == k)  # noqa: E731

    # support-init alone (the method and the guard's answers)
    si = {"shipped 0.46": SHIPPED_SI}
    for feats in [(), ("log:shots",), ("log:shots", "s"), ("log:shots", "s", "h0"), ("log:shots", "log:ways"), ("log:shots", "s", "log:ways")]:
        si[" + ".join(feats) or "one tau"] = fit(Rule(feats), cells, one, True, args.gap)
    for n, r in si.items():
        print(f"support-init {n}: {r}")
    report("support-init's own ECE", cells, {n: [c.ece(r.log_tau(c).exp(), base=True) for c in cells] for n, r in si.items()})

    # the default, path by path
    variants = {"shipped": (SHIPPED_FIRST, SHIPPED_FIRST, SHIPPED_TSALLIS, SHIPPED_SI)}
    best_si = si["log:shots + s"]
    variants["guard: new si"] = (SHIPPED_FIRST, SHIPPED_FIRST, SHIPPED_TSALLIS, best_si)
    for feats in [("log:shots", "s", "h"), ("log:shots", "s", "h", "log:ways")]:
        first = fit(Rule(feats), cells, path(0), False, args.gap)
        gated = fit(Rule(feats), cells, path(1), False, args.gap)
        both = fit(Rule(feats), cells, lambda c: (c.path == 0) | (c.path == 1), False, args.gap)
        tsallis = fit(Rule(("log:shots",) + (("log:ways",) if "log:ways" in feats else ())), cells, path(2), False, args.gap)
        tag = " + ".join(feats)
        print(f"first [{tag}]: {first}\ngated: {gated}\nfirst+gated: {both}\ntsallis: {tsallis}")
        variants[f"refit one rule [{tag}]"] = (both, both, tsallis, best_si)
        variants[f"refit per path [{tag}]"] = (first, gated, tsallis, best_si)
    eces = {n: [c.ece(default_tau(c, *v)) for c in cells] for n, v in variants.items()}
    report("the default's ECE", cells, eces)
    if args.cells:
        print("\n| cell | acc | " + " | ".join(variants) + " |")
        for i, c in enumerate(cells):
            acc = 100 * float(c.correct.double().mean())
            print(f"| {c.name} | {acc:.1f} | " + " | ".join(f"{eces[n][i]:.1f}" for n in variants) + " |")


if __name__ == "__main__":
    main()
