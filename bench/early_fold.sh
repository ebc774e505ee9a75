#!/usr/bin/env bash
# One (row, seed) on a second validation fold: trained on frames 80-479, scored on 0-59 (a 20-frame guard between),
# the x4 protocol otherwise (rule: bench/results/paper_parts_x4/rule.md, 13:24 UTC 7 Dec); a queue:
#   xargs -P 3 -L 1 bash bench/early_fold.sh < queue.txt   # lines "ROW SEED"
# Summary of the kept runs: bash bench/x4_summaries.sh early
set -euo pipefail
row=$1 seed=$2
cd "$(dirname "$0")/.."
source bench/x4_arms.sh
case $row in +hr | +cons) spec=(--rows "$row") ;; *) spec=(--rows --row "$row=${ARMS[$row]}") ;; esac
x4_ablation --seeds "$seed" --split early --train-frames 80:480 "${spec[@]}" --out bench/results/ablation_x4_early \
  --no-summary
