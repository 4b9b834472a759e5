"""A second criterion tried for choosing the Tsallis head (VALIDATION classes only): agreement
with the inductive head (the default's gate answer), alone or with the K rule of choose.py.

    cd studies/present-gate && PYTHONPATH=$PWD/../../src:$PWD python ../alpha-head/agreement.py
"""
import glob, os, re, torch
from derive import acc, perplexity, rule
T = "raw:center=0,entropy_weight=1,balance_weight=1,likelihood_weight=0,adaptive_balance=0@"
def order_of(shots): return 2 if shots <= 1 else 7 if shots >= 5 else 5
rules = {}
for path in sorted(glob.glob("out/pg/*.pt")):
    s = torch.load(path); name = os.path.basename(path)[:-3].replace("_", " ")
    shots = int(re.search(r"w(\d+)s", name).group(1)); t_key = f"{T}{order_of(shots)}"
    if t_key not in s: continue
    y = s["targets"]; ways = s["raw"].shape[-1]
    P = {h: s[h].float().argmax(-1) for h in ("support-init", "raw", "inductive")}
    t = s[t_key].float().argmax(-1)
    kr, kt = perplexity(P["raw"], ways), perplexity(t, ways)
    a_r = (P["raw"] == P["inductive"]).float().mean(1); a_t = (t == P["inductive"]).float().mean(1)
    cands = {
        "default": torch.zeros_like(kr, dtype=torch.bool),
        "K rule": (kt < kr - 0.5) & (kr < 0.75 * ways),
        "agree": a_t > a_r,
        "agree+0.05": a_t > a_r + 0.05,
        "K rule or agree+0.1": ((kt < kr - 0.5) & (kr < 0.75 * ways)) | (a_t > a_r + 0.1),
        "(K rule or agree+0.1) & share": ((kt < kr - 0.5) | (a_t > a_r + 0.1)) & (kr < 0.75 * ways),
    }
    si, ci = acc(P["support-init"], y)
    for k, pick in cands.items():
        cell = dict(name=name, shots=shots, y=y, ways=ways, **P)
        cell["raw"] = torch.where(pick.unsqueeze(1), t, P["raw"])
        a = acc(rule(cell, "raw", 6, 0.5, "si>si"), y)[0]
        rules.setdefault(k, []).append((name, a, si, ci))
base = {n: a for n, a, _, _ in rules["default"]}
for k, rows in rules.items():
    below = [n for n, a, si, ci in rows if a < si - ci]
    g = [a - base[n] for n, a, _, _ in rows]; p = [a - base[n] for n, a, _, _ in rows if "pres" in n]
    o5 = [a - base[n] for n, a, _, _ in rows if "pres" in n and "omni" in n and "w5s" in n]
    w = min(rows, key=lambda r: r[1] - base[r[0]])
    print(f"{k:32s} below {len(below)} mean {sum(g)/len(g):+.2f} present {sum(p)/len(p):+.2f} omni5shot-present {sum(o5)/len(o5):+.2f} worst {w[1]-base[w[0]]:+.1f} {w[0]}")
