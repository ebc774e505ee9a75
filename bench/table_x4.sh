#!/usr/bin/env bash
# The final x4 table on the default network (FastDepth from its NYU weights): one (row, seed) trained and read once
# on the test block (rule: bench/results/paper_parts_x4/rule.md, 2026-12-07); a queue:
#   xargs -P 3 -L 1 bash bench/table_x4.sh < queue.txt   # lines "ROW SEED"
# A third argument `val` scores on the validation block instead (a row's validation arm, same training).
# Rows trained here: lr-only, +hr, hr-oracle (ablation.py's), full and default-motion-far (x4_arms.sh's). +cons is
# the prior-fastdepth runs and upsampled-lr the lr-only networks; `bash bench/x4_summaries.sh table` summarises.
set -euo pipefail
row=$1 seed=$2 split=${3:-test}
# X4_OUT: where runs go; the table with flips (adopted 18:06 UTC 7 Dec) is X4_OUT=bench/results/ablation_x4_flip
out=${X4_OUT:-bench/results/ablation_x4_fastdepth}
cd "$(dirname "$0")/.."
source bench/x4_arms.sh
case $row in lr-only | +hr | hr-oracle) spec=(--rows "$row") ;; *) spec=(--rows --row "$row=${ARMS[$row]}") ;; esac
x4_ablation --seeds "$seed" --split "$split" "${spec[@]}" --out "$out" --no-summary
