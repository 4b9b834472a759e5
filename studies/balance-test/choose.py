"""Rules choosing between the two runs of ``runs.py`` per episode (val only): accuracy per cell
of each rule, from ``/tmp/balance-runs.pt``. ``agree``: share of queries the two runs predict
alike; ``dconf``: the second run's mean top probability minus the first's."""

from __future__ import annotations

import torch


def main() -> None:
    r = torch.load("/tmp/balance-runs.pt")
    rules = {
        "today": lambda x: x["test"] > 0,
        "never": lambda x: x["test"] < 0,
        "always": lambda x: x["test"] > -1,
    }
    for a in (0.8, 0.85, 0.9, 0.95):
        rules[f"agree>={a}"] = lambda x, a=a: x["agreement"] >= a
        rules[f"test|agree>={a}"] = lambda x, a=a: (x["test"] > 0) | (x["agreement"] >= a)
    for d in (0.0, 0.02):
        rules[f"test|dconf>{d}"] = lambda x, d=d: (x["test"] > 0) | (
            (x["conf_second"] - x["conf_first"]) > d
        )
    print(" " * 22 + " ".join(c[:9].rjust(9) for c in r))
    for name, rule in rules.items():
        accs = [torch.where(rule(x), x["acc_second"], x["acc_first"]).mean() for x in r.values()]
        print(f"{name:22s}" + " ".join(f"{100 * float(a):9.1f}" for a in accs))
    print("cells:", ", ".join(r))


if __name__ == "__main__":
    main()
