#!/usr/bin/env bash
# The one-shot GPU check. Builds a self-contained bundle (Node, one esbuild-bundled JS file,
# dawn.node, tfjs's .wasm files, PyTorch's benchmark script, and the Debian .debs of libvulkan1,
# libegl1 and libglvnd0), then runs it: on a GPU machine that has neither Node nor a package
# registry, it writes one JSON report (GPU and driver, Vulkan ICD, WebGPU adapter, gradients of the
# four models against the cpu backend, tf.memory over 20 steps, images/s on webgpu vs wasm vs
# PyTorch CUDA). See docs/cluster.md ("GPU smoke check").
#
#   bash scripts/gpu-smoke.sh --build [DIR]        build the bundle into DIR (default .cache/gpu-smoke)
#   bash scripts/gpu-smoke.sh --run-bundle DIR     run a built bundle (on the GPU machine)
#   bash scripts/gpu-smoke.sh --dry-run            build, then run here on lavapipe (smaller batches)
#
# The report goes to $OUT/gpu-smoke.json ($OUT defaults to a new temporary folder). Exit status 0
# when every check passed, 1 when one failed (the report says which), 2 on a usage or build error.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEFAULT_DIR="$ROOT/.cache/gpu-smoke"
ARCH_LIB=x86_64-linux-gnu

die() { echo "gpu-smoke: $*" >&2; exit 2; }
# The bundle is ESM; some of tfjs's CommonJS code (the wasm backend's loader) uses require and __dirname.
BANNER="import { createRequire as __smokeRequire } from 'node:module'; import { fileURLToPath as __smokeToPath } from 'node:url'; \
import { dirname as __smokeDirname } from 'node:path'; const require = __smokeRequire(import.meta.url); \
const __filename = __smokeToPath(import.meta.url); const __dirname = __smokeDirname(__filename);"

build() {
  local dir=$1
  rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/wasm"
  cd "$ROOT"
  node_modules/.bin/esbuild scripts/gpu-smoke.ts --bundle --platform=node --format=esm --target=node20 --minify --ignore-annotations \
    --log-level=warning --outfile="$dir/smoke.mjs" \
    --banner:js="$BANNER"
  cp node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "$dir/wasm/"
  gzip -6 -c "$(command -v node)" >"$dir/node.gz"
  gzip -6 -c node_modules/webgpu/dist/linux-x64/dawn.node >"$dir/dawn.node.gz"
  cp scripts/bench-torch.py "$dir/"
  cp scripts/gpu-smoke.sh "$dir/run.sh"
  (cd "$dir/debs" && apt-get download libvulkan1 libegl1 libglvnd0 >/dev/null 2>&1) \
    || { apt-get update -qq && (cd "$dir/debs" && apt-get download libvulkan1 libegl1 libglvnd0 >/dev/null); } \
    || die "apt-get download libvulkan1 libegl1 libglvnd0 failed"
  node --version >"$dir/node-version.txt"
  local size
  size=$(du -sm "$dir" | cut -f1)
  echo "gpu-smoke: bundle in $dir (${size} MB)"
  ((size < 60)) || die "bundle is ${size} MB, over the 60 MB limit"
}

# Unpacks a .deb with dpkg-deb, or with python3 (ar + tar) where there is no dpkg.
unpack_deb() {
  local deb=$1 dest=$2
  if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$deb" "$dest"; return; fi
  python3 - "$deb" "$dest" <<'PY'
import io, sys, tarfile
deb, dest = sys.argv[1], sys.argv[2]
data = open(deb, "rb").read()
assert data[:8] == b"!<arch>\n", "not an ar archive"
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    body = data[pos + 60:pos + 60 + size]
    if name.startswith("data.tar"):
        tarfile.open(fileobj=io.BytesIO(body)).extractall(dest)
    pos += 60 + size + (size % 2)
PY
}

# Where the NVIDIA Vulkan ICD is: a json in the loader's usual folders, or one written here
# pointing at libGLX_nvidia.so.0 (then passed with VK_DRIVER_FILES / VK_ICD_FILENAMES).
find_icd() {
  local work=$1 f lib
  for f in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json /usr/local/share/vulkan/icd.d/nvidia_icd*.json; do
    [[ -f $f ]] && { echo "found $f"; return; }
  done
  lib=$( (ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0/ { print $NF; exit }') || true)
  [[ -z $lib ]] && for f in /usr/lib/$ARCH_LIB/libGLX_nvidia.so.0 /usr/lib64/libGLX_nvidia.so.0 /usr/local/nvidia/lib64/libGLX_nvidia.so.0; do [[ -f $f ]] && lib=$f && break; done
  if [[ -n $lib ]]; then
    printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$lib" >"$work/nvidia_icd.json"
    echo "generated $work/nvidia_icd.json ($lib)"
    return
  fi
  echo "none"
}

run_bundle() {
  local dir expect=$2 batches=$3 seconds=$4 extra=$5
  dir=$(cd "$1" && pwd)
  local out=${OUT:-$(mktemp -d)}
  mkdir -p "$out"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  local work=$WORK
  gzip -dc "$dir/node.gz" >"$work/node" && chmod +x "$work/node"
  gzip -dc "$dir/dawn.node.gz" >"$work/dawn.node"
  mkdir -p "$work/sysroot"
  for deb in "$dir"/debs/*.deb; do unpack_deb "$deb" "$work/sysroot"; done
  local libs="$work/sysroot/usr/lib/$ARCH_LIB"
  # The host's own loader and EGL come first when it has them; ours fill the gap.
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/lib/$ARCH_LIB:$libs"

  local icd=none gpu=none
  if [[ $expect == nvidia ]]; then
    icd=$(find_icd "$work")
    if [[ $icd == generated* ]]; then export VK_DRIVER_FILES="$work/nvidia_icd.json" VK_ICD_FILENAMES="$work/nvidia_icd.json"; fi
  else
    icd="lavapipe: $( (compgen -G '/usr/share/vulkan/icd.d/lvp_icd*.json' || echo 'no lvp_icd json') | head -n1)"
  fi
  if command -v nvidia-smi >/dev/null; then
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n1)
  fi
  python3 - "$work/host.json" "$gpu" "$icd" "${VK_DRIVER_FILES:-}" "${NVIDIA_DRIVER_CAPABILITIES:-}" <<'PY'
import json, sys, platform
path, gpu, icd, hint, caps = sys.argv[1:]
json.dump({"gpu": gpu, "vulkanIcd": icd, "VK_DRIVER_FILES": hint or None, "NVIDIA_DRIVER_CAPABILITIES": caps or None,
           "kernel": platform.release(), "hostname": platform.node()}, open(path, "w"))
PY
  cp "$work/host.json" "$out/host.json"

  local torch="$work/torch.json"
  if [[ $expect == nvidia ]]; then
    timeout 90 python3 "$dir/bench-torch.py" --device cuda --quick --batch "$batches" >"$torch" 2>"$out/torch.stderr" \
      || echo '{"available": false, "reason": "bench-torch.py failed or timed out (see torch.stderr)"}' >"$torch"
  else
    echo '{"available": false, "reason": "dry run: no CUDA here"}' >"$torch"
  fi
  cp "$torch" "$out/torch.json"

  echo "gpu-smoke: running (report: $out/gpu-smoke.json)"
  local rc=0
  local limit=${GPU_SMOKE_TIMEOUT:-200}
  # shellcheck disable=SC2086 # $extra is a list of flags
  timeout "$limit" "$work/node" "$dir/smoke.mjs" --out "$out/gpu-smoke.json" --dawn "$work/dawn.node" --wasm-dir "$dir/wasm" \
    --host "$work/host.json" --torch "$torch" --expect "$expect" --batches "$batches" --seconds "$seconds" $extra \
    2> >(grep -v '^Warning: max.*artificially reduced' >&2) || rc=$?
  if ((rc == 124)); then echo "gpu-smoke: timed out after $limit s; the partial report is in $out/gpu-smoke.json" >&2; fi
  return $rc
}

case ${1:-} in
  --build) build "${2:-$DEFAULT_DIR}" ;;
  --run-bundle) [[ -n ${2:-} && -f ${2:-}/smoke.mjs ]] || die "--run-bundle needs a bundle folder (with smoke.mjs)"; run_bundle "$2" nvidia "${GPU_SMOKE_BATCHES:-32,256,1024}" "${GPU_SMOKE_SECONDS:-4}" "" ;;
  --dry-run)
    build "$DEFAULT_DIR"
    # lavapipe is a CPU: batch 32 only, gradients at batch 8, memory on lenet, short timings.
    GPU_SMOKE_TIMEOUT=${GPU_SMOKE_TIMEOUT:-540} run_bundle "$DEFAULT_DIR" software "${GPU_SMOKE_BATCHES:-32}" "${GPU_SMOKE_SECONDS:-1}" "--grad-batch 8 --memory-model lenet" ;;
  *) die "usage: gpu-smoke.sh --build [DIR] | --run-bundle DIR | --dry-run" ;;
esac
