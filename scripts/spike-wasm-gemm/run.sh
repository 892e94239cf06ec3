#!/usr/bin/env bash
# Issue #11 route 2 spike, one command: build gemm.c (build.sh), check it against float64
# JavaScript (gemm.spike.ts), then measure it against XNNPACK and oneDNN (bench.ts). Arguments go
# to bench.ts, e.g. `bash scripts/spike-wasm-gemm/run.sh --reps 15 --json /tmp/spike.json`.
# oneDNN's column needs the native addon (npm run build:native); without it the column is absent.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/spike-wasm-gemm/build.sh
npx vitest run --config scripts/spike-wasm-gemm/vitest.config.ts
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
node --experimental-wasm-relaxed-simd --import tsx scripts/spike-wasm-gemm/bench.ts "$@"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
