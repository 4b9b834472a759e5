"""False alarms of the product's centred unknown rule on clean query sets (issue 17, 2026-12-02):
K ways x 5 shots, 10 clean queries per class (no outliers), mini-ImageNet / Omniglot val, 300
episodes; the mean rate and the share of episodes with 5 or more images flagged.

    cd studies/unknown-threshold
    OMP_NUM_THREADS=1 PYTHONPATH=../../src:../../benchmarks ../../.venv/bin/python few_classes.py
"""
import sys
import numpy as np
import torch
sys.path.insert(0, ".")
from study import features
from anyshot.outliers import covering_centre, class_means, nearest_mean_distance, unknown_reference

torch.set_num_threads(1)
for domain in ("mini", "omni"):
    rows, labels = features(domain)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for ways in (2, 3, 5, 8):
        for shots in (5,):
            rng = np.random.default_rng([ways, shots, 7])
            rates, centred = [], 0
            for _ in range(300):
                chosen = rng.choice(len(by_class), ways, replace=False)
                sup, qry = [], []
                for c in chosen:
                    items = rng.choice(by_class[c], shots + 10, replace=False)
                    sup.append(items[:shots]); qry.append(items[shots:])
                s = rows[np.concatenate(sup)]; q = rows[np.concatenate(qry)]
                t = torch.cat([torch.full((shots,), k) for k in range(ways)])
                centre, covered = covering_centre(s[None], t[None], q[None], ways)
                c = centre[0] if bool(covered[0]) else None
                centred += int(bool(covered[0]))
                ref = unknown_reference(s, t, ways, centre=c)
                thr = ref.threshold(0.05)
                d = nearest_mean_distance(s[None], t[None], q[None], ways, centre=None if c is None else c[None])[0]
                rates.append(float((d > thr).float().mean()))
            print(f"{domain} {ways}w{shots}s: false alarms {100*np.mean(rates):.1f}% (episodes with >=5 of {10*ways}: {100*np.mean([r*10*ways >= 5 for r in rates]):.1f}%), centred {centred}/300", flush=True)
