#!/usr/bin/env bash
# The GPU check of uint8 delivery (issue "uint8 to the device"), at most 8 minutes on one CUDA GPU:
#   1. benchmarks/training_device.py at 224 px, batch 90: uint8 against float delivery on the CPU and the GPU
#      (fp32 and bf16-mixed): items/s, host-to-device MB a step, peak CUDA memory;
#   2. the default experiment at 224 px on the GPU for one epoch (memegap-train; its run dir under logs/), its test metrics.
# Writes $OUT (default benchmarks/gpu_check_out, ignored by git) with the GPU's name in every JSON file.
# Exits 2 where no CUDA GPU is available: the CPU figures in benchmarks/README.md decide there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-benchmarks/gpu_check_out}
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 2)"; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured" >&2
  exit 2
fi
mkdir -p "$OUT"
"$PY" -c "import json, torch; print(json.dumps({'gpu': torch.cuda.get_device_name(), 'torch': torch.__version__}))" > "$OUT/gpu.json"
timeout 300 "$PY" benchmarks/training_device.py --image-size 224 --batch-size 90 --steps 20 --warmup 5 > "$OUT/training_device_224.json"
WANDB_MODE=offline timeout 180 "$PY" -m memegap.train experiment=twemoji_gap trainer=gpu data.image_size=224 \
  trainer.max_epochs=1 > "$OUT/default_224.log" 2>&1
cat "$OUT/gpu.json" "$OUT/training_device_224.json"; tail -20 "$OUT/default_224.log"
