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
# Signals only (support images, no training) for the cells run before a signal was added, and
# for the other image size of each domain (does a signal measure the domain or the image size?).
sig() { # tag dataset root size ways shots queries episodes
  $PY studies/scope-rule/study.py --rows signals --dataset $2 --data-root $3 --image-size $4 \
    --ways $5 --shots $6 --queries $7 --episodes $8 --out $R/signals/$1.jsonl
}
queue_signals() {
  sig o84-5w1 omniglot $O 84 5 1 15 20
  sig o84-20w1 omniglot $O 84 20 1 15 20
  sig o84-5w5 omniglot $O 84 5 5 15 20
  sig m224-10w20 mini-imagenet $M 224 10 20 15 1
  sig m84-5w5 mini-imagenet $M 84 5 5 15 20
  sig m84-10w20 mini-imagenet $M 84 10 20 15 20
  sig m84-5w1 mini-imagenet $M 84 5 1 15 20
  sig m224-5w5 mini-imagenet $M 224 5 5 15 20
  sig o224-20w5 omniglot $O 224 20 5 15 10
}
# What ran after the first 30 minutes (the machine was loaded about 4x: every cell took 2-4x
# its first estimate): queue A stopped after o84-20w5, and continued with the cells that matter
# most for the rule first; the signal queue dropped o224-20w5 (o224-5w5 has Omniglot's 224 px
# signals).
queue_a2() {
  cell m224-5w1 mini-imagenet $M 224 5 1 15 20
  cell o224-5w5 omniglot $O 224 5 5 15 20
  cell o84-5w15 omniglot $O 84 5 15 5 20
  cell o84-20w15 omniglot $O 84 20 15 5 20
}
queue_signals2() {
  sig m84-10w20 mini-imagenet $M 84 10 20 15 20
  sig m84-5w1 mini-imagenet $M 84 5 1 15 20
  sig m224-5w5 mini-imagenet $M 224 5 5 15 20
}
case "$1" in
  a2) queue_a2 ;;
  signals2) queue_signals2 ;;
  signals) queue_signals ;;
  a) queue_a ;;
  b) queue_b ;;
  *) queue_a > $R/queue-a.log 2>&1 & queue_b > $R/queue-b.log 2>&1 & wait ;;
esac
