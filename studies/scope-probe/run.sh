#!/bin/bash
# $1 dataset $2 root $3 ways $4 shots $5 queries $6 episodes $7 tag
A=/work/main/.venv/bin/anyshot
common="--dataset $1 --data-root $2 --split val --ways $3 --shots $4 --queries $5 --episodes $6 --image-size 84 --threads 1 --quiet"
OMP_NUM_THREADS=1 $A evaluate $common --method finetune --output /tmp/scope/$7-head.json > /tmp/scope/$7-head.log 2>&1 &
OMP_NUM_THREADS=1 $A evaluate $common --method finetune --scope last --lr 0.01 --network-lr 0.001 --temperature 0.1 --epochs 25 --output /tmp/scope/$7-last.json > /tmp/scope/$7-last.log 2>&1
wait
