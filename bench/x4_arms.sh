# The declared x4 arms, each as its config overrides (sourced by validation_arms.sh and x4_summaries.sh); the rules
# that declared them: bench/results/paper_parts_x4/rule*.md, recipe_x4/rule_motion.md.
# (4) in the faithful form (teacher sees the full G_lr, LR branch one-to-one, reference affinity), less its share;
# (5) with neighbours 20 frames apart at w 5
FAITHFUL_VIEW="loss.teacher_view=full,loss.distill=lr_coarse,loss.affinity_form=reference,loss.affinity_grid=[15,20]"
MOTION_FAR="loss.w_motion=5,loss.motion_offsets=[-20,20],loss.motion_min_baseline=0.02,loss.motion_smoothness=0"
MOTION_FAR+=",data.color_focal=525"
# An arm is its objective; the network comes from the caller: validation_arms.sh and x4_summaries.sh pin
# EfficientNet-Lite0 from ImageNet (the default network until 7 Dec; prior-fastdepth overrides it), table_x4.sh
# keeps the default, FastDepth
EFFICIENTNET=(model.arch=efficientnet_lite0 "model.mean=[0.5,0.5,0.5]" "model.std=[0.5,0.5,0.5]" model.prior=)
FASTDEPTH="model.arch=fastdepth,model.mean=[0,0,0],model.std=[1,1,1]"
FASTDEPTH+=",model.prior=../shared/weights/fastdepth/fast_depth_224.tflite"
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
  [prior-fastdepth]="${FASTDEPTH}"  # the default objective from FastDepth's weights (its runs: ablation_x4)
  [default-steps500]="train.steps=500"  # the default recipe, half the budget (rule.md, 11:52 UTC 7 Dec)
  [default-enclr02]="train.encoder_lr_scale=0.2"  # the default recipe, the encoder at 0.2x the decoder's rate
  [default-hflip]="data.hflip=true"  # the default recipe with horizontal flips (rule.md, 16:47 UTC 7 Dec)
  [default-zoom]="data.scale_jitter=0.25"  # the default recipe (flips on) with scale jitter (rule.md, 19:57 UTC 7 Dec)
)
# bench/ablation.py on the x4 protocol of these arms: 1000 steps, one thread per run, frames cached; the caller adds
# the rest (a network other than the default comes as one more --set, e.g. --set "${EFFICIENTNET[@]}")
x4_ablation() {
  OMP_NUM_THREADS=1 .venv/bin/python bench/ablation.py --factor 4 --steps 1000 \
    --set data.cache_frames=true train.log_every=50 "$@"
}
