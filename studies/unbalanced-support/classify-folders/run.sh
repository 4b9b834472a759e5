#!/usr/bin/env bash
# `anyshot classify` as a user runs it, on folders of mini-ImageNet test images: 5 classes, one
# of 1 labelled image and four of 20, 15 query images of each class (draw.py SEED writes dSEED/
# with symlinks into the shared data). Columns of scores.txt: draw, method (new = the default
# today, old = the default of commit f819353 from a worktree at OLD, si = --method
# support-init), queries right of 75 (the `class` column: the top class, unknown or not), the
# 1-image class's queries right of 15. Run from a scratch folder:
#   OLD=/path/to/worktree-of-f819353 bash run.sh > scores.txt
# With KEEP=5 DRAWS="21 22 ...", each draw keeps 5 of its 75 query images (scores-5.txt: OLD =
# a worktree of 024a7df, the default before shared_spread).
set -euo pipefail
here=$(dirname "$0"); repo=$(cd "$here/../../.." && pwd)
for s in ${DRAWS:-11 12 13 14 15 16 17 18}; do
  python3 "$here/draw.py" "$s" ${KEEP:-}
  for v in new old si; do
    src="$repo/src"; [ "$v" = old ] && src="$OLD/src"
    method=transductive; [ "$v" = si ] && method=support-init
    PYTHONPATH="$src" "$repo/.venv/bin/python" -m anyshot classify --support "d$s/support" \
      --query "d$s/query" --method "$method" --cache-dir cache --output "d$s/pred-$v.csv" \
      > "d$s/log-$v.txt" 2>&1
    python3 "$here/score.py" "d$s" "$v"
  done
done
