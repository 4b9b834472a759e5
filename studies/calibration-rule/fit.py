"""Fit per-episode confidence-temperature rules ``log tau = a + b . stats`` on the collected val
episodes (``collect.py``) and report each rule's ECE per cell.

Every rule divides the uncalibrated default's logits of a trained episode (the gate's inductive
head included) by its ``tau``; an episode the guard answered with support-init keeps the shipped
``fallback_temperature`` (0.46). Parameters minimise the NLL of the query labels with every cell
weighted equally (``--fit-cells``: the 12 cells of ``benchmarks/calibration.py``, or those plus
the realistic-grid extras). ``--holdout`` also fits each rule on one domain and reports it on
the other (how a rule carries to a domain it never saw).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from anyshot.calibration import calibration_bins

SHIPPED_FALLBACK = 0.46
CORE = [
    f"{d}-{k}-5w{s}s"
    for d in ("mini", "omni")
    for s in (1, 5)
    for k in ("balanced", "dirichlet2", "dirichlet0.5")
]


class Cell:
    """One cell's queries: logits ``[N, K]``, targets ``[N]``, per-query episode stats
    ``[N, F]`` (named), guard mask ``[N]``, episode ``[N]``."""

    def __init__(self, raw: dict, names: tuple[str, ...]) -> None:
        q = [len(t) for t in raw["targets"]]
        self.logits = torch.cat(raw["logits"]).double()
        self.targets = torch.cat(raw["targets"]).long()
        self.episode = torch.repeat_interleave(torch.arange(len(q)), torch.tensor(q))
        self.stats = {n: raw["stats"][:, i][self.episode] for i, n in enumerate(names)}
        self.guard = raw["guard"][self.episode]
        self.gated = raw["gated"][self.episode]
        self.domain = raw["domain"]
        self.correct = self.logits.argmax(-1) == self.targets

    def ece(self, tau: torch.Tensor) -> float:
        conf = (self.logits / tau[:, None]).softmax(-1).amax(-1)
        return 100 * calibration_bins(conf, self.correct).ece()

    def accuracy(self) -> float:
        return 100 * float(self.correct.double().mean())


def transform(name: str, cell: Cell) -> torch.Tensor:
    """A statistic by name; ``log:x`` is ``log(x)``, ``1-x`` forms, ``loo0`` is LOO accuracy with
    0 at one shot."""
    if name.startswith("log:"):
        return transform(name[4:], cell).clamp_min(1e-6).log()
    if name == "loo0":
        return torch.nan_to_num(cell.stats["loo"], nan=0.0)
    if name == "one_shot":
        return (cell.stats["shots"] == 1).double()
    if "*" in name:
        left, right = name.split("*", 1)
        return transform(left, cell) * transform(right, cell)
    if name == "gated":
        return cell.gated.double()
    if name == "log:ways":
        return cell.stats["ways"].log()
    if name == "inv_shots":
        return 1.0 / cell.stats["shots"]
    return cell.stats[name]


class Rule:
    """``log tau = a + sum_j b_j * feature_j`` for trained episodes; guard: 0.46."""

    def __init__(self, features: list[str], guard: bool = False) -> None:
        self.features = features
        self.guard = guard  # the guard's episodes get a rule of their own (else 0.46)
        self.theta = torch.zeros((2 if guard else 1) * (1 + len(features)), dtype=torch.float64)
        if guard:
            self.theta[1 + len(features)] = math.log(SHIPPED_FALLBACK)

    def design(self, cell: Cell) -> torch.Tensor:
        cols = [torch.ones(len(cell.targets), dtype=torch.float64)]
        cols += [transform(f, cell).double() for f in self.features]
        return torch.stack(cols, 1)

    def tau(self, cell: Cell, theta: torch.Tensor | None = None) -> torch.Tensor:
        theta = self.theta if theta is None else theta
        return self._tau(cell, self.design(cell), theta)

    def _tau(self, cell: Cell, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        f = x.shape[1]
        trained = (x @ theta[:f]).exp()
        other = (x @ theta[f:]).exp() if self.guard else torch.full_like(trained, SHIPPED_FALLBACK)
        return torch.where(cell.guard, other, trained)

    def fit(self, cells: list[Cell], gap_weight: float = 0.0) -> Rule:
        """Minimise the mean over ``cells`` of the query NLL, plus ``gap_weight`` times the mean
        over cells of the squared gap between the cell's mean confidence and its accuracy."""
        designs = [self.design(c) for c in cells]
        theta = self.theta.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([theta], lr=1, max_iter=200, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-10, tolerance_change=1e-12)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.zeros((), dtype=torch.float64)
            for c, x in zip(cells, designs, strict=True):
                tau = self._tau(c, x, theta)
                logp = (c.logits / tau[:, None]).log_softmax(-1)
                loss = loss - logp.gather(1, c.targets[:, None]).mean()
                gap = logp.exp().amax(-1).mean() - c.correct.double().mean()
                loss = loss + gap_weight * gap**2
            loss = loss / len(cells)
            loss.backward()
            return loss

        opt.step(closure)
        self.theta = theta.detach()
        return self

    def label(self) -> str:
        if self.guard:
            return "guard too: " + (" + ".join(self.features) or "one tau")
        return "tau = 1 (shipped)" if self.features == ["shipped"] else (
            "one tau" if not self.features else " + ".join(self.features))


class Shipped(Rule):
    def __init__(self) -> None:
        super().__init__(["shipped"])

    def tau(self, cell: Cell, theta: torch.Tensor | None = None) -> torch.Tensor:
        ones = torch.ones(len(cell.targets), dtype=torch.float64)
        return torch.where(cell.guard, torch.full_like(ones, SHIPPED_FALLBACK), ones)

    def fit(self, cells: list[Cell]) -> Rule:
        return self


CANDIDATES: list[list[str]] = [
    [],
    ["log:shots"],
    ["si_sim"],
    ["si_sim_c"],
    ["q_maxcos"],
    ["q_margin"],
    ["si_conf"],
    ["agree"],
    ["head_conf"],
    ["head_ent"],
    ["logit_std"],
    ["head_margin"],
    ["spread"],
    ["log:shots", "si_sim"],
    ["log:shots", "si_sim_c"],
    ["log:shots", "q_maxcos"],
    ["log:shots", "q_margin"],
    ["log:shots", "si_conf"],
    ["log:shots", "agree"],
    ["log:shots", "head_conf"],
    ["log:shots", "head_ent"],
    ["log:shots", "spread"],
    ["log:shots", "loo0"],
    ["si_sim", "q_margin"],
    ["si_conf", "head_conf"],
    ["log:shots", "si_sim", "head_conf"],
    ["log:shots", "si_conf", "head_conf"],
    ["log:shots", "q_margin", "head_conf"],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("--fit-cells", choices=["core", "all"], default="core")
    parser.add_argument("--holdout", action="store_true")
    parser.add_argument("--rules", default=None, help="';'-separated rules, features ','-separated")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--theta", default=None,
                        help="with one --rules rule: evaluate these ','-separated parameters, no fit")
    parser.add_argument("--table", type=Path, default=None, help="write a markdown table of the rules")
    parser.add_argument("--guard-rule", action="store_true", help="fit the guard's episodes too")
    parser.add_argument("--gap-weight", type=float, default=0.0,
                        help="add this times the mean squared (mean confidence - accuracy) of the cells")
    args = parser.parse_args()
    torch.set_num_threads(1)
    saved = torch.load(args.data)
    cells = {n: Cell(raw, saved["stats"]) for n, raw in saved["cells"].items()}
    fit_names = CORE if args.fit_cells == "core" else list(cells)
    candidates = CANDIDATES if args.rules is None else [
        [f for f in r.split(",") if f] for r in args.rules.split(";")]
    table = {}
    for features in [None, *candidates]:
        if features is None:
            rule: Rule = Shipped()
        elif args.theta is not None:
            rule = Rule(features)
            rule.theta = torch.tensor([float(v) for v in args.theta.split(",")], dtype=torch.float64)
        else:
            rule = Rule(features, args.guard_rule).fit([cells[n] for n in fit_names], args.gap_weight)
        eces = {n: c.ece(rule.tau(c)) for n, c in cells.items()}
        core = [eces[n] for n in CORE]
        table[rule.label()] = {"theta": rule.theta.tolist(), "ece": eces,
                               "core_max": max(core), "core_mean": sum(core) / len(core)}
        extra = [v for n, v in eces.items() if n not in CORE]
        line = f"{rule.label():38s} theta={[round(t, 3) for t in rule.theta.tolist()]}"
        line += f"  core max {max(core):5.1f} mean {sum(core) / len(core):4.1f}"
        if extra:
            line += f"  extra max {max(extra):5.1f} mean {sum(extra) / len(extra):4.1f}"
        if args.holdout and rule.features and rule.features != ["shipped"]:
            held = []
            for train, test in (("mini", "omni"), ("omni", "mini")):
                r = Rule(rule.features, args.guard_rule).fit([cells[n] for n in fit_names if cells[n].domain == train])
                held += [cells[n].ece(r.tau(cells[n])) for n in CORE if cells[n].domain == test]
            line += f"  holdout max {max(held):5.1f} mean {sum(held) / len(held):4.1f}"
        print(line, flush=True)
    if args.table:
        labels = list(table)
        lines = ["| cell | accuracy (%) | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
        lines.append("| parameters (a, b, ...) | | " + " | ".join(
            "" if "shipped" in n else ", ".join(f"{t:.3f}" for t in table[n]["theta"]) for n in labels) + " |")
        for name, cell in cells.items():
            lines.append(f"| {name} | {cell.accuracy():.1f} | " + " | ".join(
                f"{table[n]['ece'][name]:.1f}" for n in labels) + " |")
        for key, title in (("core_max", "max of the 12 calibration cells"), ("core_mean", "mean of the 12")):
            lines.append(f"| **{title}** | | " + " | ".join(f"**{table[n][key]:.1f}**" for n in labels) + " |")
        extra = [n for n in cells if n not in CORE]
        if extra:
            for f, title in ((max, "max of the realistic-grid cells"), (lambda v: sum(v) / len(v), "mean of them")):
                lines.append(f"| **{title}** | | " + " | ".join(
                    f"**{f([table[n]['ece'][c] for c in extra]):.1f}**" for n in labels) + " |")
        args.table.write_text("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
