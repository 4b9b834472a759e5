"""Probe 3 of the study (VALIDATION classes only): alpha-TIM (peers.py settings) with one setting
changed: fewer steps at a larger learning rate, centring, no marginal / no conditional term,
cosine logits. First 40 episodes of each named cell.

    cd studies/present-gate && PYTHONPATH=$PWD/../../src:$PWD/../safe-gate:$PWD \
        python ../alpha-head/probe_alpha_tim.py "mini 16w1s pres5;mini 16w1s pres1" ["atim;center"]
"""
import sys, torch, torch.nn.functional as F
torch.set_num_threads(1)
import grid
from study2 import SEED2, cells
from derive import perplexity
sys.path.insert(0, "../../benchmarks")
import peers

def atim(s, t, q, ways, steps=1000, lr=1e-4, T=15.0, cw=1.0, mw=1.0, alpha=None, center=False, cosine=False):
    with torch.inference_mode(False), torch.enable_grad():
        s = s.float(); q = q.float()
        if center:
            oh = F.one_hot(t, ways).float()
            means = (oh.transpose(1, 2) @ F.normalize(s, dim=-1)) / oh.sum(1).unsqueeze(-1)
            c = means.mean(1, keepdim=True)
            s = F.normalize(s, dim=-1) - c; q = F.normalize(q, dim=-1) - c
        s = F.normalize(s, dim=-1); q = F.normalize(q, dim=-1)
        oh = F.one_hot(t, ways).float()
        shots = oh.sum(1).amin(-1)
        a = torch.where(shots <= 1, 2.0, torch.where(shots >= 5, 7.0, 5.0)) if alpha is None else torch.full_like(shots, alpha)
        w = ((oh.transpose(1, 2) @ s) / oh.sum(1).unsqueeze(-1)).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        def logits(x):
            if cosine:
                return T * x @ F.normalize(w, dim=-1).transpose(1, 2)
            return -T / 2 * (1 - 2 * x @ w.transpose(1, 2) + (w * w).sum(-1).unsqueeze(1))
        for _ in range(steps):
            p = logits(q).softmax(-1)
            ce = -(oh * logits(s).log_softmax(-1)).sum(-1).mean(-1)
            marg = peers._alpha_entropy(p.mean(1), a)
            cond = peers._alpha_entropy(p, a).mean(-1)
            loss = ce - (mw * marg - cw * cond)
            opt.zero_grad(); loss.sum().backward(); opt.step()
        return logits(q).detach()

VARIANTS = {
    "atim": {},
    "steps200 lr5e-4": dict(steps=200, lr=5e-4),
    "steps50 lr2e-3": dict(steps=50, lr=2e-3),
    "center": dict(center=True),
    "mw0": dict(mw=0.0),
    "cw0": dict(cw=0.0),
    "cosine T10": dict(cosine=True, T=10.0),
}
names = sys.argv[1].split(";"); vs = sys.argv[2].split(";") if len(sys.argv) > 2 else list(VARIANTS)
for i, (ds, name, kind, ways, shots, eps, kw) in enumerate(cells()):
    if name not in names: continue
    f, m = grid.load(ds)
    s_idx, tgt, q_idx, qt = grid.make_cell(m, kind, ways, shots, eps, SEED2 + i, **kw)
    n = min(eps, 40)
    for v in vs:
        l = atim(f[s_idx[:n]], tgt[:n], f[q_idx[:n]], ways, **VARIANTS[v])
        acc = (l.argmax(-1) == qt[:n]).float().mean() * 100
        print(f"{name:22s} {v:18s} acc {acc:5.1f} K {perplexity(l.argmax(-1), ways).mean():4.1f}", flush=True)
