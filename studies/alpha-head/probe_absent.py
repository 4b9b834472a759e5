"""Probe 1 of the study (VALIDATION classes only): accuracy, predicted classes and the prior mass on
absent classes of the default head without safeguards ("raw") and variants of its settings.

    cd studies/present-gate && PYTHONPATH=$PWD/../../src:$PWD/../safe-gate:$PWD \
        python ../alpha-head/probe_absent.py "mini 16w1s pres5" likelihood_weight=0.5 epochs=100
"""
import sys, dataclasses, torch, torch.nn.functional as F
torch.set_num_threads(1)
import grid
from study2 import SEED2, cells
from run_heads import RAW
from derive import perplexity
want = sys.argv[1]; variants = sys.argv[2:]
feats = {}
for i, (ds, name, kind, ways, shots, eps, kw) in enumerate(cells()):
    if name != want: continue
    f, m = grid.load(ds)
    s_idx, tgt, q_idx, qt = grid.make_cell(m, kind, ways, shots, eps, SEED2 + i, **kw)
    for v in ["raw"] + variants:
        meth = RAW if v == "raw" else dataclasses.replace(RAW, **{k: type(getattr(RAW, k))(float(x)) for k, x in (p.split("=") for p in v.split(","))})
        fit = meth.fit_features(f[s_idx], tgt, f[q_idx], ways=ways, episodes_per_chunk=64)
        l = fit.query_logits
        acc = (l.argmax(-1) == qt).float().mean() * 100
        present = F.one_hot(qt, ways).sum(1) > 0
        pi = fit.bias.exp() if fit.bias is not None else None
        absent_mass = (pi * ~present).sum(1).mean() if pi is not None else float('nan')
        print(f"{v:40s} acc {acc:5.1f} K {perplexity(l.argmax(-1), ways).mean():4.1f} absent prior mass {absent_mass:.3f}", flush=True)
