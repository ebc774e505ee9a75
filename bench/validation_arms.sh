#!/usr/bin/env bash
# One (row, seed) of the declared validation arms against +hr (bench/results/paper_parts_x4/rule*.md,
# recipe_x4/rule_motion.md), trained and scored on validation; a queue:
#   xargs -P 3 -L 1 bash bench/validation_arms.sh < queue.txt   # lines "ROW SEED"
# The declared test read of kept runs (no training): bash bench/validation_arms.sh ROW "0 1 2" test
set -euo pipefail
row=$1 seeds=$2 split=${3:-val}
read -ra seeds <<< "$seeds"
[[ $split == val ]] && train=() || train=(--no-train)
cd "$(dirname "$0")/.."
source bench/x4_arms.sh
x4_ablation --seeds "${seeds[@]}" --split "$split" --rows --row "$row=${ARMS[$row]}" --baseline +hr \
  --set "${EFFICIENTNET[@]}" --out bench/results/paper_parts_x4 --no-summary "${train[@]}"
