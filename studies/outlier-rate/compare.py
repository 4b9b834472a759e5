import json, sys, numpy as np
new = json.load(open(sys.argv[1]))["results"]
old = json.load(open(sys.argv[2]))["results"]  # e.g. benchmarks/results/realistic-grid-val.json
rows = []
for cell, r in new.items():
    if "recommended" not in r: continue
    o = old[cell]["recommended"]["accuracy"]; n = r["recommended"]["accuracy"]; si = r["support-init"]["accuracy"]
    rows.append((n - o, cell, si, o, n, r["recommended"]["below_support_init"]))
rows.sort()
for x in rows[:12]: print(f"{x[1]:28s} SI {x[2]:6.2f} old {x[3]:6.2f} new {x[4]:6.2f} diff {x[0]:+.2f} below {x[5]}")
print("...")
for x in rows[-4:]: print(f"{x[1]:28s} SI {x[2]:6.2f} old {x[3]:6.2f} new {x[4]:6.2f} diff {x[0]:+.2f}")
print("cells", len(rows), "mean diff", np.mean([x[0] for x in rows]), "below", sum(x[5] for x in rows))
