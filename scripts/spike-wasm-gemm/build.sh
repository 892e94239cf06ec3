#!/usr/bin/env bash
# Builds gemm.c into build/gemm-simd128.wasm (f32x4.mul + f32x4.add) and build/gemm-relaxed.wasm
# (f32x4.relaxed_madd). Needs clang ≥ 16 and its wasm-ld (Debian: apt-get install clang-16 lld-16;
# bookworm's default clang 14 predates the final relaxed-SIMD opcodes that Node 20's V8 decodes).
# Freestanding: no libc, the module exports its memory and grows it from JavaScript.
set -euo pipefail
cd "$(dirname "$0")"
CLANG=${CLANG:-$(command -v clang-16 || command -v clang || true)}
if [[ -z $CLANG ]]; then
  echo "build.sh: no clang found (apt-get install clang-16 lld-16)" >&2
  exit 3
fi
LLD_DIR=$(dirname "$(readlink -f "$CLANG")")
mkdir -p build
FLAGS=(--target=wasm32 -O3 -msimd128 -mbulk-memory -nostdlib -fno-builtin -ffreestanding
  -Wall -Wextra -Wno-unused-parameter
  "-B$LLD_DIR" -Wl,--no-entry -Wl,--export-memory -Wl,--export=__heap_base
  -Wl,--initial-memory=1048576 -Wl,--growable-table -Wl,--stack-first -Wl,-z,stack-size=262144)
"$CLANG" "${FLAGS[@]}" -o build/gemm-simd128.wasm gemm.c
"$CLANG" "${FLAGS[@]}" -mrelaxed-simd -DRELAXED -o build/gemm-relaxed.wasm gemm.c
echo "built with $("$CLANG" --version | head -1): $(ls -l build/*.wasm | awk '{print $NF" "$5" B"}' | tr '\n' ' ')"
