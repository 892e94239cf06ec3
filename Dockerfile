# One image for both roles: the command picks it (`coordinator`, `worker`, `train`, ...).
#
#   docker build -t dtrain .
#   docker run --rm dtrain coordinator --help
#
# Build arguments:
#   BASE_IMAGE    an image with Node.js 20 and npm, a `node` user (uid 1000) and /bin/sh.
#                 Default: the official node:20-bookworm-slim. scripts/compose-e2e.sh passes a
#                 locally imported one where no registry is reachable.
#   GPU_PACKAGES  optional GPU backends to keep, from package.json's optionalDependencies:
#                 "@tensorflow/tfjs-backend-webgpu webgpu" (WebGPU through Vulkan) or
#                 "@tensorflow/tfjs-node-gpu" (CUDA). Default: none; `--backend auto` then
#                 falls back to wasm. See docs/cluster.md for what each needs on the host.
#   APT_PACKAGES  Debian packages the kept backends need at run time, e.g. "libvulkan1 libegl1" for
#                 WebGPU. Needs a Debian-based BASE_IMAGE (the default is one).
#   NATIVE_KERNELS  the optional oneDNN kernels (native/, docs/kernels.md): "auto" (default) builds
#                 them where the base image has apt-get (g++ and libdnnl-dev in a build stage,
#                 libdnnl2 in the image); "1" requires that; "0" leaves them out (wasm kernels).
#                 scripts/docker-native-e2e.sh builds both on a debootstrapped Debian base.
ARG BASE_IMAGE=node:20-bookworm-slim

FROM ${BASE_IMAGE} AS native
ARG NATIVE_KERNELS=auto
WORKDIR /app
COPY native/ ./native/
RUN set -eu; \
    mkdir -p native/build; \
    if [ "$NATIVE_KERNELS" = 0 ]; then \
      echo "native kernels: left out (NATIVE_KERNELS=0)"; \
    elif command -v apt-get >/dev/null; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++ libdnnl-dev; \
      node native/build.mjs; \
    elif [ "$NATIVE_KERNELS" = 1 ]; then \
      echo "NATIVE_KERNELS=1 needs apt-get in BASE_IMAGE" >&2; exit 1; \
    else \
      echo "native kernels: left out (no apt-get in BASE_IMAGE)"; \
    fi

FROM ${BASE_IMAGE} AS deps
ARG GPU_PACKAGES=""
WORKDIR /app
COPY package.json package-lock.json ./
# Install exactly what the lockfile says, without install scripts (the optional native backends
# would download libtensorflow), then uninstall the optional GPU backends that were not asked
# for: ~370 MB of packages otherwise. Source maps are a third of what is left and never read.
RUN set -eu; \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund; \
    optional=$(node -p "Object.keys(require('./package.json').optionalDependencies || {}).join(' ')"); \
    drop=""; \
    for p in $optional; do case " $GPU_PACKAGES " in *" $p "*) ;; *) drop="$drop $p" ;; esac; done; \
    if [ -n "$drop" ]; then npm uninstall --no-save --omit=dev --ignore-scripts --no-audit --no-fund $drop; fi; \
    if [ -n "$GPU_PACKAGES" ]; then npm rebuild $GPU_PACKAGES; fi; \
    node -e "const fs = require('fs'); for (const f of fs.readdirSync('node_modules', { recursive: true })) if (f.endsWith('.map')) fs.rmSync('node_modules/' + f)"; \
    npm cache clean --force 2>/dev/null || true

FROM ${BASE_IMAGE}
ARG APT_PACKAGES=""
ENV NODE_ENV=production \
    DTRAIN_CACHE_DIR=/cache
WORKDIR /app
# /runs and /cache belong to the unprivileged user, so named volumes mounted there (which take the
# mount point's owner when first created) are writable without root. runs/, the default parent of
# a run folder, points at /runs.
RUN set -eu; \
    if [ -n "$APT_PACKAGES" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends $APT_PACKAGES; \
      apt-get clean; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    mkdir -p /runs /cache; \
    chown node:node /runs /cache; \
    ln -s /runs /app/runs
COPY --from=deps /app/node_modules ./node_modules
# The native kernels, if the native stage built them, and the oneDNN runtime they load.
COPY --from=native /app/native/build ./native/build
RUN set -eu; \
    if [ -f native/build/dtrain-kernels.node ]; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libdnnl2; \
      apt-get clean; \
      rm -rf /var/lib/apt/lists/*; \
    fi
COPY . .
USER node
ENTRYPOINT ["node", "--single-threaded-gc", "bin/dtrain.js"]
CMD ["--help"]
