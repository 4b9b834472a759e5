"""Search simple gate rules (VAL only): gate if Q < max(f, (m + s*shots) * Kx)."""
import glob, os, re, itertools
import torch
from derive3 import acc, load
import os as _os
OUT = _os.environ.get("ANYSHOT_STUDY_OUT", "out")  # where features and predictions go

cells = []
for path in sorted(glob.glob(f"{OUT}/s2/*.pt")):
    name = os.path.basename(path)[:-3]
    st = load(name)
    if not all(h in st for h in ("support-init", "raw", "unguarded")):
        continue
    shots = int(re.search(r"w(\d+)s", name).group(1))
    si = st["support-init"].float(); p_si = si.argmax(-1); E, Q, K = si.shape
    khat = torch.tensor([float(len(torch.unique(r))) for r in p_si])
    p_raw = st["raw"].float().argmax(-1)
    agree = (p_raw == p_si).float().mean(1)
    y = st["targets"]
    m0, ci0 = acc(p_si, y)
    cells.append((name, shots, Q, K, khat, p_si, p_raw, agree, y, m0, ci0))

results = []
for kx, m, s, f, g in itertools.product(("Khat",), (2, 4, 5, 6, 7, 8, 10, 12), (0, 0.5, 1, 2), (2, 16, 31, 61), (0.5,)):
    fails, gains, worst = 0, [], 0.0
    for (name, shots, Q, K, khat, p_si, p_raw, agree, y, m0, ci0) in cells:
        kk = khat if kx == "Khat" else torch.full_like(khat, K)
        gate = (Q < f) | (Q < (m + s * shots) * kk) | (agree < g)
        m1, _ = acc(torch.where(gate.unsqueeze(1), p_si, p_raw), y)
        fails += m1 < m0 - ci0
        worst = min(worst, (m1 - m0) / max(ci0, 1e-9))
        gains.append(m1 - m0)
    results.append((fails, -sum(gains) / len(gains), kx, m, s, f, g, worst))
results.sort()
for r in [r for r in results if r[4] == 0][:8] + results[:6]:
    print(f"fails={r[0]} mean gain={-r[1]:.2f} worst={r[7]:.2f}CI  Kx={r[2]} m={r[3]} s={r[4]} floor={r[5]} guard={r[6]}")
print("current:", [r for r in results if r[2] == "K" and r[3] == 2 and r[4] == 0 and r[5] == 2])
