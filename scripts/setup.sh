#!/usr/bin/env bash
# One command on a fresh machine: install from the lock file, find the data, and run a full-precision
# evaluation of the bundled SwinIR-light stand-in (x2) on Set5 with the official test protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
export ONNXRUNTIME_NODE_INSTALL=skip NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false
npm ci --no-audit --no-fund
DATA="${HARMOQ_DATA:-./data}"
if [ ! -d "$DATA/benchmarks/Set5" ]; then
  echo "setup: no benchmark data in '$DATA'; fetching the public sets (see scripts/setup-data.mjs)" >&2
  npx zx scripts/setup-data.mjs --data "$DATA"
fi
WEIGHTS="$DATA/weights/house/swinir_light_x2_house.pth"
if [ ! -f "$WEIGHTS" ]; then
  echo "setup: $WEIGHTS not found; run 'npx zx scripts/get-weights.mjs' for the official SwinIR weights and pass them to 'npx harmoq eval --weights'" >&2
  exit 1
fi
mkdir -p out
npx harmoq eval --arch swinir-light --scale 2 --weights "$WEIGHTS" --dataset Set5 --data "$DATA" --json out/eval_set5_x2.json
