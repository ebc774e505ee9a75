#!/usr/bin/env bash
# The summaries of the x4 runs, from kept evaluations (no training; a missing evaluation of a kept checkpoint is made):
#   bash bench/x4_summaries.sh [val4|penalty|val|test|table|table-noflip|table-efficientnet|prior|motion|recheck
#                              |recheck-test|early
#                              |two-folds|flip-test|zoom|zoom-test|all]
# val4: (4) on top of the default, against it; penalty: (3) with Charbonnier against two-sided L1; val / test: every
# issue-21 arm against +hr (summary_val.json, summary.json); table: the final x4 table, every row on FastDepth with
# flips (ablation_x4/summary.json, runs from X4_OUT=bench/results/ablation_x4_flip bench/table_x4.sh; +cons is the
# default-hflip runs); table-noflip: the same rows before flips were adopted (ablation_x4/summary_noflip.json);
# table-efficientnet: the same rows on EfficientNet-Lite0 and
# the prior as a row (ablation_x4/summary_efficientnet.json); prior: the FastDepth prior on validation; motion:
# motion on the FastDepth default, on validation (ablation_x4/summary_val_motion.json); recheck: (3), 500 steps and the
# encoder at 0.2x against the FastDepth default on validation (summary_val_recheck.json), recheck-test: their test read;
# early: the second validation fold (trained on 80-479, scored on 0-59; ablation_x4_early/summary_early.json);
# two-folds: motion, removing (3), the encoder at 0.2x and flips on both folds pooled (bench/two_folds.py;
# ablation_x4_early/summary_two_folds.json); flip-test: flips' test read (ablation_x4/summary_test_flip.json); zoom:
# scale jitter against the default with flips on both folds pooled (ablation_x4_early/summary_two_folds_zoom.json),
# zoom-test: its test read, only if the rule adopted it (ablation_x4/summary_test_zoom.json).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/x4_arms.sh
what=${1:-all}
row() { for name in "$@"; do printf -- '--row\n%s=%s\n' "$name" "${ARMS[$name]}"; done; }
fastdepth() { x4_ablation --seeds 0 1 2 3 4 5 --no-train "$@"; }  # runs on the default network
ablation() { fastdepth --set "${EFFICIENTNET[@]}" "$@"; }  # runs on EfficientNet-Lite0: every issue-21 arm
mapfile -t parts < <(row +cons-charb +cons +cons-hrteach +cons-lrteach +distill full)
if [[ $what == val4 || $what == all ]]; then
  mapfile -t rows < <(row +cons-charb full full-share1)
  ablation --split val --out bench/results/paper_parts_x4 --rows +hr "${rows[@]}" --baseline +cons-charb \
    --compare full:+cons-charb --compare full:+hr --compare full-share1:+hr --summary summary_val_full.json
fi
if [[ $what == penalty || $what == all ]]; then
  mapfile -t rows < <(row +cons-charb +cons)
  ablation --split val --out bench/results/paper_parts_x4 --rows "${rows[@]}" --baseline +cons \
    --summary summary_val_penalty.json
fi
if [[ $what == val || $what == all ]]; then
  mapfile -t extra < <(row full-share1)
  ablation --split val --out bench/results/paper_parts_x4 --rows +hr "${parts[@]}" "${extra[@]}" \
    --compare full:+cons-charb --baseline +hr
fi
if [[ $what == test || $what == all ]]; then
  ablation --split test --out bench/results/paper_parts_x4 --rows +hr "${parts[@]}" --compare full:+cons-charb \
    --baseline +hr
fi
kept=bench/results/paper_parts_x4
if [[ $what == table-efficientnet || $what == all ]]; then
  mapfile -t rows < <(row full default-motion-far prior-fastdepth)
  ablation --split test --out bench/results/ablation_x4 --summary summary_efficientnet.json \
    --rows lr-only +hr +cons full hr-oracle upsampled-lr "${rows[@]}" --reuse "+hr=$kept/+hr" \
    --reuse "+cons=$kept/+cons-charb" --reuse "full=$kept/full" --reuse "default-motion-far=$kept/default-motion-far" \
    --compare default-motion-far:+cons \
    --compare prior-fastdepth:+cons --baseline +hr
fi
table() {  # the final table's rows from folder $1, +cons from $2, written to ablation_x4/$3; seeds from the caller
  mapfile -t rows < <(row full default-motion-far)
  reuse=()
  for name in lr-only +hr full hr-oracle upsampled-lr default-motion-far; do reuse+=(--reuse "$name=$1/$name"); done
  x4_ablation --no-train --split test --out bench/results/ablation_x4 --rows lr-only +hr +cons full hr-oracle \
    upsampled-lr "${rows[@]}" "${reuse[@]}" --reuse "+cons=$2" --compare default-motion-far:+cons --baseline +hr \
    --summary "$3" "${@:4}"
}
if [[ $what == table || $what == all ]]; then
  table bench/results/ablation_x4_flip bench/results/ablation_x4_fastdepth/default-hflip summary.json \
    --seeds 0 1 2 3 4 5 --set data.hflip=true
fi
if [[ $what == table-noflip || $what == all ]]; then
  table bench/results/ablation_x4_fastdepth bench/results/ablation_x4/prior-fastdepth summary_noflip.json \
    --seeds 0 1 2 3 4 5 --set data.hflip=false
fi
if [[ $what == prior || $what == all ]]; then
  mapfile -t rows < <(row prior-fastdepth)
  ablation --split val --out bench/results/ablation_x4 --rows +cons "${rows[@]}" --reuse "+cons=$kept/+cons-charb" \
    --baseline +cons --summary summary_val_prior.json
fi
if [[ $what == motion || $what == all ]]; then
  mapfile -t rows < <(row default-motion-far)
  fastdepth --split val --out bench/results/ablation_x4 --rows +cons "${rows[@]}" \
    --reuse "+cons=bench/results/ablation_x4/prior-fastdepth" \
    --reuse "default-motion-far=bench/results/ablation_x4_fastdepth/default-motion-far" --baseline +cons \
    --summary summary_val_motion.json
fi
case $what in recheck) splits=(val) ;; recheck-test) splits=(test) ;; all) splits=(val test) ;; *) splits=() ;; esac
for split in "${splits[@]}"; do
  fd=bench/results/ablation_x4_fastdepth
  mapfile -t rows < <(row default-steps500 default-enclr02)
  fastdepth --split "$split" --out bench/results/ablation_x4 --rows +cons +hr "${rows[@]}" \
    --reuse "+cons=bench/results/ablation_x4/prior-fastdepth" --reuse "+hr=$fd/+hr" \
    --reuse "default-steps500=$fd/default-steps500" --reuse "default-enclr02=$fd/default-enclr02" \
    --compare +hr:+cons --baseline +cons --summary "summary_${split}_recheck.json"
done
if [[ $what == early || $what == all ]]; then
  mapfile -t rows < <(row default-steps500)
  fastdepth --split early --train-frames 80:480 --out bench/results/ablation_x4_early --rows +cons +hr "${rows[@]}" \
    --compare +hr:+cons --baseline +cons
fi
if [[ $what == two-folds || $what == all ]]; then
  OMP_NUM_THREADS=1 .venv/bin/python bench/two_folds.py --fold val=bench/results/ablation_x4_fastdepth \
    --fold early=bench/results/ablation_x4_early --reuse val:+cons=bench/results/ablation_x4/prior-fastdepth \
    --compare default-motion-far:+cons --compare +hr:+cons --compare default-enclr02:+cons \
    --compare default-hflip:+cons \
    --out bench/results/ablation_x4_early/summary_two_folds.json
fi
if [[ $what == flip-test || $what == all ]]; then
  mapfile -t rows < <(row default-hflip)
  fastdepth --split test --out bench/results/ablation_x4 --rows +cons "${rows[@]}" \
    --reuse "+cons=bench/results/ablation_x4/prior-fastdepth" \
    --reuse "default-hflip=bench/results/ablation_x4_fastdepth/default-hflip" --baseline +cons \
    --summary summary_test_flip.json
fi
if [[ $what == zoom || $what == all ]]; then
  OMP_NUM_THREADS=1 .venv/bin/python bench/two_folds.py --fold val=bench/results/ablation_x4_fastdepth \
    --fold early=bench/results/ablation_x4_early --compare default-zoom:default-hflip \
    --out bench/results/ablation_x4_early/summary_two_folds_zoom.json
fi
if [[ $what == zoom-test ]]; then  # not in `all`: read only if the 19:57 rule adopted scale jitter
  mapfile -t rows < <(row default-hflip default-zoom)
  fastdepth --split test --out bench/results/ablation_x4 --rows "${rows[@]}" \
    --reuse "default-hflip=bench/results/ablation_x4_fastdepth/default-hflip" \
    --reuse "default-zoom=bench/results/ablation_x4_fastdepth/default-zoom" --baseline default-hflip \
    --summary summary_test_zoom.json
fi
