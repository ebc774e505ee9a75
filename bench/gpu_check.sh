#!/usr/bin/env bash
# One command for an NVIDIA machine: every GPU path present (PyTorch CUDA, ONNX Runtime CUDA/TensorRT EPs, TensorRT
# engines) against CPU ONNX Runtime on real frames, latency at 640x480; one table + bench/results/gpu_check.json.
# Installs nothing, needs no network; finishes in a few minutes. Exit 0: table written; 3: no GPU path here (listed).
#   bash bench/gpu_check.sh [--iters 200] [--data ../shared/data/redkitchen] [--out bench/results/gpu_check.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if ! "$PYTHON" -c "import depth_node" 2>/dev/null; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # a bare checkout: run from the source tree
fi
if ! "$PYTHON" -c "import depth_node_training" 2>/dev/null; then
  # the training package installs as depth_node_training from training/; map it for a bare checkout
  shim=$(mktemp -d); ln -s "$PWD/training" "$shim/depth_node_training"; export PYTHONPATH="$shim:$PYTHONPATH"
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi
exec timeout 355 "$PYTHON" bench/gpu_check.py "$@"   # it starts no new path after 240 s
