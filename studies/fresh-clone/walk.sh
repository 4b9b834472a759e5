#!/bin/bash
# Fresh-clone walk-through of the README's "Your own images" section (issue 15): clone, make demo,
# then its commands literally on folders copied from mini-ImageNet val; prints TIME lines.
# REPO (default: this checkout), WALK (default /tmp/walk), MINI (default ../shared/data/mini-imagenet).
set -e
REPO=${REPO:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)}
export MINI=$(realpath "${MINI:-$REPO/../shared/data/mini-imagenet}")
export W=${WALK:-/tmp/walk}; rm -rf "$W"; mkdir -p "$W"; cd "$W"
git clone -q "$REPO" anyshot
python3 - <<'PY'
import csv, shutil
from pathlib import Path
import os
mini, work = Path(os.environ["MINI"]), Path(os.environ["W"])
by = {}
for r in csv.DictReader(open(mini / "val.csv")):
    by.setdefault(r["label"], []).append(r["filename"])
classes = sorted(by)[:3]
root = work / "photos"
for c in classes:
    files = sorted(by[c])
    for i, f in enumerate(files[:5]):
        d = root / "support" / c; d.mkdir(parents=True, exist_ok=True); shutil.copy(mini / "images" / f, d / f)
    for f in files[5:15]:
        d = root / "new"; d.mkdir(parents=True, exist_ok=True); shutil.copy(mini / "images" / f, d / f)
    for f in files[15:25]:
        d = root / "unsorted"; d.mkdir(parents=True, exist_ok=True); shutil.copy(mini / "images" / f, d / f)
for c in sorted(by)[:6]:
    d = work / "mydata" / c; d.mkdir(parents=True, exist_ok=True)
    for f in sorted(by[c])[:20]:
        shutil.copy(mini / "images" / f, d / f)
PY
cd anyshot
t() { local s=$(date +%s.%N); "$@"; local e=$(date +%s.%N); echo "TIME $(echo "$e - $s" | bc) s: $*" >&2; }
t make demo > ../demo.log 2>&1
source .venv/bin/activate
cd ..
t anyshot classify --support photos/support --query photos/new --output predictions.csv
t anyshot classify --support photos/support --query photos/new --output predictions2.csv
t anyshot fit --support photos/support --unlabeled photos/unsorted --output model.pt
t anyshot predict --model model.pt photos/new --output predictions.csv
t anyshot suggest --model model.pt --unlabeled photos/unsorted -n 20 > suggest.txt
t anyshot evaluate --dataset folder --data-root mydata --ways 5 --shots 1 --queries 10 --episodes 100 --cache-dir cache --output results.json
t anyshot evaluate --dataset folder --data-root mydata --ways 5 --shots 1,5 --sweep --method support-init --hardness --cache-dir cache --output r.json
t anyshot report results.json r-*.json --output report/
head -4 predictions.csv; ls report report/plots 2>/dev/null | head
