#!/usr/bin/env bash
# One prepared check for a GPU machine, under five minutes: what runs there, measured, into $OUT (default ./device-check).
#   bash tests/gpu/device_check.sh            # from a checkout with torch, onnx and onnxruntime installed
# 1. the machine; 2. a small bundle exported here; 3. ONNX Runtime's CUDA provider: parity with its CPU provider and
# latency (if this onnxruntime has CUDA); 4. benchmarks/torch_gpu.py; 5. the TensorRT tests if tensorrt imports.
# Every step writes its own file and a failed step does not stop the others; docs quote these files, naming the machine.
set -u
cd "$(dirname "$0")/../.."
OUT="${OUT:-device-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi || true; "$PY" -c "import torch, onnxruntime as ort; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda'); print('onnxruntime', ort.__version__, ort.get_available_providers())"; } > "$OUT/machine.txt" 2>&1

timeout 120 "$PY" export/to_trt.py --downstream resnet50 --num-classes 10 --out "$OUT/bundle" --preset visual > "$OUT/export.txt" 2>&1

if "$PY" -c "import onnxruntime as ort, sys; sys.exit('CUDAExecutionProvider' not in ort.get_available_providers())"; then
  timeout 90 "$PY" -m anchor_edge verify "$OUT/bundle" --backend onnxruntime --providers cuda > "$OUT/ort_cuda_verify.txt" 2>&1
  timeout 120 "$PY" benchmarks/latency.py --bundle "$OUT/bundle" --providers cuda --seconds 10 --warmup 3 \
    --json "$OUT/latency_ort_cuda.json" > "$OUT/latency_ort_cuda.txt" 2>&1
else
  echo "this onnxruntime has no CUDAExecutionProvider: skipped" > "$OUT/ort_cuda_verify.txt"
fi

timeout 90 "$PY" -m benchmarks.torch_gpu --device cuda --num-classes 10 --preset visual --seconds 10 \
  --json "$OUT/torch_gpu.json" > "$OUT/torch_gpu.txt" 2>&1

if "$PY" -c "import tensorrt" 2>/dev/null; then
  timeout 240 "$PY" -m pytest -q tests/gpu -m gpu -rs > "$OUT/tensorrt_tests.txt" 2>&1
else
  echo "tensorrt does not import here: TensorRT tests not run" > "$OUT/tensorrt_tests.txt"
fi
ls -l "$OUT"
