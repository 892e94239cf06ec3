#!/usr/bin/env bash
# Trains a few LeNet steps on the WebGPU backend (Dawn, from the `webgpu` npm package) and prints
# images per second, then the same on wasm for comparison. Needs a GPU driver and a Vulkan loader
# (libvulkan.so.1). Extra flags go to both runs, e.g. --steps 50 --batch 128.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsx scripts/gpu-smoke.ts --backend webgpu "$@"
npx tsx scripts/gpu-smoke.ts --backend wasm "$@"
