#!/usr/bin/env bash
# Installs Mesa's lavapipe (a CPU Vulkan driver) and the Vulkan loader from Debian bookworm-backports,
# so that the `webgpu` package (Dawn) finds a real Vulkan adapter on a machine without a GPU. The
# tests in worker/webgpu.test.ts train on it. bookworm's own mesa 22.3 is refused by Dawn; the
# backports' 25.x works. The backports suite is added with the URIs of the Debian source apt already
# uses (its deb822 .sources file), so no mirror host is written down here. Idempotent; needs root.
set -euo pipefail

ICD_GLOB='/usr/share/vulkan/icd.d/lvp_icd*.json'
have_lavapipe() {
  compgen -G "$ICD_GLOB" >/dev/null && [[ -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 || -e /usr/lib/aarch64-linux-gnu/libvulkan.so.1 ]] \
    && dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -qv '^22\.'
}
if have_lavapipe; then
  echo "lavapipe already installed (mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers))"
  exit 0
fi

# The first deb822 source that lists a plain 'bookworm' suite gives the URIs (and keyring).
src=$(grep -lE '^Suites:.*\bbookworm\b' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
if [[ -z $src ]]; then
  echo "install-lavapipe: no deb822 .sources file with a bookworm suite under /etc/apt/sources.list.d/" >&2
  exit 1
fi
uris=$(awk '/^URIs:/ { print; exit }' "$src")
signed=$(awk '/^Signed-By:/ { print; exit }' "$src")
target=/etc/apt/sources.list.d/dtrain-bookworm-backports.sources
if [[ ! -f $target ]]; then
  {
    echo "Types: deb"
    echo "$uris"
    echo "Suites: bookworm-backports"
    echo "Components: main"
    [[ -n $signed ]] && echo "$signed"
  } >"$target"
  echo "install-lavapipe: added bookworm-backports from $src ($uris)"
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
echo "installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers), libvulkan1 $(dpkg-query -W -f='${Version}' libvulkan1)"
