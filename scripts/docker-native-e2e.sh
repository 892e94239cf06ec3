#!/usr/bin/env bash
# End-to-end test of the Dockerfile's optional native kernels (oneDNN) against a real Docker engine:
#
#   sudo scripts/docker-native-e2e.sh [--install-deps]
#
#  1. Starts dockerd in a temp folder if no daemon answers (and stops only that one at the end).
#  2. Makes a base image with apt-get and no registry: `debootstrap --variant=minbase` of this
#     machine's Debian release from the mirror in apt's own sources, plus this machine's Node.js,
#     its headers and npm, imported as dtrain-base:debian.
#  3. Builds the app image with NATIVE_KERNELS=1 (the native stage apt-installs g++ and
#     libdnnl-dev and compiles the addon; the image apt-installs libdnnl2), trains lenet for a few
#     steps in it, and checks that backend_selected names the oneDNN kernel set.
#  4. Builds it again with NATIVE_KERNELS=0 and checks that the same run says wasm kernels.
#  5. Logs both build times and image sizes, and removes what it made (images, daemon, temp folder).
#
# The builds use host networking: apt-get and npm ci reach the mirror and the npm registry the
# way this machine does.
# --install-deps: apt-get install docker.io and debootstrap when missing (needs root).
# Exit status: 0 when every check passed; 1 with a "FAIL:" line naming the check otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
e2e_name=docker-native-e2e
image=dtrain:native-e2e-$$
wasm_image=dtrain:wasm-e2e-$$
# shellcheck source=scripts/e2e-lib.sh
. "$root/scripts/e2e-lib.sh"
base_rootfs=debootstrap
base_image=dtrain-base:debian

teardown() {
  local status=$?
  set +e
  # A daemon started here takes its images with it; on one that was running, remove the second.
  [[ -n $dockerd_pid ]] || docker image rm -f "$wasm_image" >/dev/null 2>&1
  e2e_teardown_docker "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM
e2e_setup "$@"
[[ $(id -u) == 0 ]] || fail "debootstrap needs root"
e2e_require_tools dockerd:docker.io debootstrap:debootstrap
e2e_start_daemon

# build TAG NATIVE_KERNELS: the app image from the Dockerfile, on the Debian base.
build() {
  local began=$SECONDS
  log "docker build NATIVE_KERNELS=$2"
  docker build --quiet --network host --build-arg "BASE_IMAGE=$base_image" --build-arg "NATIVE_KERNELS=$2" \
    -t "$1" "$root" >"$work/build-$2.log" 2>&1 || { tail -30 "$work/build-$2.log" >&2; fail "docker build NATIVE_KERNELS=$2 failed"; }
  log "image $1: $(docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'), built in $((SECONDS - began)) s"
}

# expect_kernels TAG SET: a short training run in the image logs backend_selected with kernel set SET.
expect_kernels() {
  local line kernels
  docker run --rm --network none "$1" train --dataset synthetic --model lenet --max-steps 20 \
    --limit-train 1024 --workers 1 --no-plots >"$work/train-$2.log" 2>&1 ||
    { tail -20 "$work/train-$2.log" >&2; fail "training in $1 failed"; }
  line=$(grep -m1 '"event":"backend_selected"' "$work/train-$2.log") || fail "no backend_selected line from training in $1"
  kernels=$(grep -o '"kernels":{[^}]*}' <<<"$line") || fail "backend_selected names no kernel set: $line"
  log "$1: $kernels"
  [[ $kernels == *"\"set\":\"$2\""* ]] || fail "$1 trains on the wrong kernel set, expected $2"
}

build "$image" 1
e2e_check_image
expect_kernels "$image" onednn
build "$wasm_image" 0
expect_kernels "$wasm_image" wasm
sizes=$(docker image inspect -f '{{.Size}}' "$image" "$wasm_image" | paste -sd' ')
log "size of the native kernels in the image: $(awk '{printf "%.0f MB", ($1 - $2) / 1e6}' <<<"$sizes")"
