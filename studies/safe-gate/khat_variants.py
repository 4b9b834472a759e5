import glob, os, re, torch
import torch.nn.functional as F
from derive3 import acc, load
import os as _os
OUT = _os.environ.get("ANYSHOT_STUDY_OUT", "out")  # where features and predictions go
def khat(p_si, K, kind):
    counts = F.one_hot(p_si, K).sum(1).float()  # [E,K]
    if kind == "distinct": return (counts > 0).sum(1).float()
    if kind == "ge2": return (counts >= 2).sum(1).float().clamp_min(1)
    if kind == "perp":
        p = counts / counts.sum(1, keepdim=True)
        return torch.exp(-(p * p.clamp_min(1e-12).log()).sum(1))
    if kind == "ge5pct":
        return (counts >= 0.05 * counts.sum(1, keepdim=True)).sum(1).float().clamp_min(1)
rows = []
for path in sorted(glob.glob(f"{OUT}/s2/*.pt")):
    name = os.path.basename(path)[:-3]; st = load(name)
    if not all(h in st for h in ("support-init", "raw")): continue
    shots = int(re.search(r"w(\d+)s", name).group(1))
    si = st["support-init"].float(); p_si = si.argmax(-1); E, Q, K = si.shape
    p_raw = st["raw"].float().argmax(-1); agree = (p_raw == p_si).float().mean(1); y = st["targets"]
    m0, ci0 = acc(p_si, y); mr, _ = acc(p_raw, y)
    out = [name.replace("_", " "), f"{m0:.1f}±{ci0:.1f}", f"{mr:.1f}"]
    for kind in ("distinct", "ge2", "perp", "ge5pct"):
        for m, s in ((5, 1), (4, 1), (6, 0.5)):
            kk = khat(p_si, K, kind)
            gate = (Q < (m + s * shots) * kk) | (Q <= 1) | (agree < 0.5)
            m1, _ = acc(torch.where(gate.unsqueeze(1), p_si, p_raw), y)
            out.append((kind, m, s, m1, m1 < m0 - ci0, float(gate.float().mean())))
    rows.append(out)
variants = [(o[0], o[1], o[2]) for o in rows[0][3:]]
for i, v in enumerate(variants):
    fails = [r[0] for r in rows if r[3 + i][4]]
    gain = sum(r[3 + i][3] - float(r[1].split("±")[0]) for r in rows) / len(rows)
    print(v, "fails", len(fails), f"mean gain {gain:.2f}", fails[:6])
print()
for r in rows:
    if "pres" in r[0]:
        print(r[0], r[1], r[2], " ".join(f"{o[0][:4]}{o[1]}:{o[3]:.1f}{'x' if o[4] else ''}({100*o[5]:.0f}%)" for o in r[3:] if o[1] == 5))
print()
for r in rows:
    sel = [o for o in r[3:] if o[1] == 6]
    print(f"{r[0]:28s} {r[1]:10s} raw {r[2]:5s}", " ".join(f"{o[0][:4]}:{o[3]:.1f}{'x' if o[4] else ''}({100*o[5]:.0f}%)" for o in sel if o[0] in ("perp", "ge5pct", "distinct")))

# the previous default's gate (Q < 2 K support classes, Q <= 1) with the same guard
old_fails, old_gain = [], 0.0
for path in sorted(glob.glob(f"{OUT}/s2/*.pt")):
    name = os.path.basename(path)[:-3]; st = load(name)
    if not all(h in st for h in ("support-init", "raw")): continue
    si = st["support-init"].float(); p_si = si.argmax(-1); E, Q, K = si.shape
    p_raw = st["raw"].float().argmax(-1); agree = (p_raw == p_si).float().mean(1); y = st["targets"]
    m0, ci0 = acc(p_si, y)
    gate = torch.full((E,), Q < 2 * K or Q <= 1) | (agree < 0.5)
    m1, _ = acc(torch.where(gate.unsqueeze(1), p_si, p_raw), y)
    old_gain += m1 - m0
    if m1 < m0 - ci0: old_fails.append(name.replace("_", " "))
print("previous gate (Q < 2K)", "fails", len(old_fails), f"mean gain {old_gain / len(rows):.2f}", old_fails)
