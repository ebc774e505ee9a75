#!/usr/bin/env bash
# One (row, seed) of the declared validation arms against +hr (bench/results/paper_parts_x4/rule*.md,
# recipe_x4/rule_motion.md), trained and scored on validation; a queue:
#   xargs -P 3 -L 1 bash bench/validation_arms.sh < queue.txt   # lines "ROW SEED"
# The declared test read of kept runs (no training): bash bench/validation_arms.sh ROW "0 1 2" test
set -euo pipefail
row=$1 seeds=$2 split=${3:-val}
read -ra seeds <<< "$seeds"
[[ $split == val ]] && train=() || train=(--no-train)
# (4) in the faithful form (teacher sees the full G_lr, LR branch one-to-one, reference affinity), less its share;
# (5) with neighbours 20 frames apart at w 5
FAITHFUL_VIEW="loss.teacher_view=full,loss.distill=lr_coarse,loss.affinity_form=reference,loss.affinity_grid=[15,20]"
MOTION_FAR="loss.w_motion=5,loss.motion_offsets=[-20,20],loss.motion_min_baseline=0.02,loss.motion_smoothness=0,data.color_focal=525"
declare -A ARMS=(
  [+hr]="loss.w_cons=0,loss.w_affinity=0"
  [+cons-hrteach]="loss.w_cons=0.5,loss.cons_penalty=form,loss.w_affinity=0,loss.cons_grad=hr_teaches_lr"
  [+cons-lrteach]="loss.w_cons=0.5,loss.cons_penalty=form,loss.w_affinity=0,loss.cons_grad=lr_teaches_hr"
  [+cons-charb]="loss.w_cons=0.5,loss.w_affinity=0,loss.cons_penalty=charbonnier"
  [+cons]="loss.w_cons=0.5,loss.cons_penalty=form,loss.w_affinity=0"
  [full]="loss.w_cons=0.5,loss.cons_penalty=charbonnier,loss.w_affinity=1,loss.affinity_share=0.25,${FAITHFUL_VIEW}"
  [full-share1]="loss.w_cons=0.5,loss.cons_penalty=charbonnier,loss.w_affinity=1,loss.affinity_share=1,${FAITHFUL_VIEW}"
  [+hr-motion-far]="loss.w_cons=0,loss.w_affinity=0,${MOTION_FAR}"
  [default-motion-far]="loss.w_cons=0.5,loss.w_affinity=0,loss.cons_penalty=charbonnier,${MOTION_FAR}"
  [+cons-holes]="loss.w_cons=0.5,loss.cons_penalty=form,loss.w_affinity=0,data.lr_holes=0.3"
  [+hr-planar]="loss.w_cons=0,loss.w_affinity=0,loss.w_planar=1,loss.planar_tolerance=0.02"
  [+hr-planar10]="loss.w_cons=0,loss.w_affinity=0,loss.w_planar=10,loss.planar_tolerance=0.02"
  [+hr-holes]="loss.w_cons=0,loss.w_affinity=0,data.lr_holes=0.3"
  [+distill]="loss.w_cons=0,loss.w_affinity=1,loss.affinity_share=0.25,${FAITHFUL_VIEW}"
)
cd "$(dirname "$0")/.."
OMP_NUM_THREADS=1 exec .venv/bin/python bench/ablation.py --factor 4 --steps 1000 --seeds "${seeds[@]}" \
  --split "$split" --rows --row "$row=${ARMS[$row]}" --baseline +hr --set data.cache_frames=true train.log_every=50 \
  --out bench/results/paper_parts_x4 --no-summary "${train[@]}"
