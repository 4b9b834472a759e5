"""Probe 0 of the study (VALIDATION classes only): per stored head, accuracy, accuracy if it had known
which classes the queries hold ("orc": logits of absent classes removed) and the effective number
of classes it predicts, on a few present-class cells.

    cd studies/present-gate && PYTHONPATH=$PWD/../../src:$PWD python ../alpha-head/probe_oracle.py
"""
import torch
import torch.nn.functional as F

from derive import perplexity

CELLS = ["mini_16w1s_pres5", "mini_16w1s_pres3", "mini_16w5s_pres5", "omni_20w1s_pres5_q75",
         "omni_20w5s_pres5_q75", "mini_16w1s_pres1"]
for name in CELLS:
    s = torch.load(f"out/pg/{name}.pt")
    y = s["targets"]
    ways = s["raw"].shape[-1]
    present = F.one_hot(y, ways).sum(1) > 0  # [E, K]
    out = f"{name:24s}"
    for h in ["support-init", "raw", "inductive", "alpha-tim"]:
        if h not in s:
            continue
        logits = s[h].float()
        accuracy = (logits.argmax(-1) == y).float().mean() * 100
        known = logits.masked_fill(~present.unsqueeze(1), -1e9)
        oracle = (known.argmax(-1) == y).float().mean() * 100
        k = perplexity(logits.argmax(-1), ways).mean()
        out += f" | {h[:6]} {accuracy:5.1f} orc {oracle:5.1f} K {k:4.1f}"
    print(out)
