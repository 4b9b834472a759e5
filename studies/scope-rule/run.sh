#!/bin/bash
# The study's runs, two queues (one process each, one thread each), from the worktree root.
# Each line appends per-episode JSON lines to studies/scope-rule/results/<tag>.jsonl; a rerun
# skips the episodes already there. Queue A: Omniglot val cells, then mini-ImageNet 5-way
# 1-shot, then Omniglot at 224 px. Queue B: mini-ImageNet 5-way 5-shot, then 10-way 20-shot.
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD/src:$PWD/benchmarks
PY=${PY:-/work/main/.venv/bin/python}
R=studies/scope-rule/results
cell() { # tag dataset root size ways shots queries episodes
  $PY studies/scope-rule/study.py --dataset $2 --data-root $3 --image-size $4 --ways $5 \
    --shots $6 --queries $7 --episodes $8 --out $R/$1.jsonl
}
O=../shared/data/omniglot
M=../shared/data/mini-imagenet
queue_a() {
  cell o84-5w1 omniglot $O 84 5 1 15 20
  cell o84-20w1 omniglot $O 84 20 1 15 20
  cell o84-5w5 omniglot $O 84 5 5 15 20
  cell o84-20w5 omniglot $O 84 20 5 15 20
  cell o84-5w15 omniglot $O 84 5 15 5 20
  cell o84-20w15 omniglot $O 84 20 15 5 20
  cell m224-5w1 mini-imagenet $M 224 5 1 15 20
  cell o224-5w5 omniglot $O 224 5 5 15 20
}
queue_b() {
  cell m224-5w5 mini-imagenet $M 224 5 5 15 20
  cell m224-10w20 mini-imagenet $M 224 10 20 15 20
}
case "$1" in
  a) queue_a ;;
  b) queue_b ;;
  *) queue_a > $R/queue-a.log 2>&1 & queue_b > $R/queue-b.log 2>&1 & wait ;;
esac
