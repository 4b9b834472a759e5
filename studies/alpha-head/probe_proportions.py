"""Probe 2 of the study (VALIDATION classes only): the trained head's class proportions re-estimated
to convergence (EM, maximum likelihood or empirical Bayes) with its logits sharpened 1-3x.

    cd studies/present-gate && PYTHONPATH=$PWD/../../src:$PWD/../safe-gate:$PWD \
        python ../alpha-head/probe_proportions.py "mini 16w1s pres5" "omni 20w1s pres5 q75"
"""
import sys, dataclasses, torch, torch.nn.functional as F
torch.set_num_threads(1)
import grid
from study2 import SEED2, cells
from run_heads import RAW
from derive import perplexity
from anyshot.methods.objective import estimated_log_prior
for want in sys.argv[1:]:
  for i, (ds, name, kind, ways, shots, eps, kw) in enumerate(cells()):
    if name != want: continue
    f, m = grid.load(ds)
    s_idx, tgt, q_idx, qt = grid.make_cell(m, kind, ways, shots, eps, SEED2 + i, **kw)
    fit = RAW.fit_features(f[s_idx], tgt, f[q_idx], ways=ways, episodes_per_chunk=64)
    l = fit.query_logits; bias = fit.bias.float().cpu()
    base = l - bias.unsqueeze(1)
    present = F.one_hot(qt, ways).sum(1) > 0
    Q = l.shape[1]
    def report(tag, lp):
        ll = base + lp.unsqueeze(1)
        acc = (ll.argmax(-1) == qt).float().mean() * 100
        print(f"{name:22s} {tag:28s} acc {acc:5.1f} K {perplexity(ll.argmax(-1), ways).mean():4.1f} absent {(lp.exp()*~present).sum(1).mean():.3f}", flush=True)
    report("raw", bias)
    for scale in [1.0, 1.5, 2.0, 3.0]:
        for mode in ["eb", "ml"]:
          lp = bias.clone()
          for _ in range(100):
            r = F.softmax(scale * base + lp.unsqueeze(1), -1).sum(1)
            lp = estimated_log_prior(r, Q, 0.0, empirical_bayes=(mode == "eb"))
          report(f"EM {mode} scale {scale}", lp)
