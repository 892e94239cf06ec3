#!/usr/bin/env bash
# End-to-end test of the Docker deployment against a real Docker engine and docker-compose:
#
#   sudo scripts/compose-e2e.sh [--install-deps]
#
#  1. Starts dockerd in a temp folder if no daemon answers (and stops only that one at the end).
#  2. Makes the base image without a registry: a root filesystem holding this machine's Node.js,
#     npm, /bin/sh and the libraries they load, imported as dtrain-base:node20.
#  3. Builds the app image from the Dockerfile with docker-compose (npm ci needs the npm registry).
#  4. Runs docker-compose.yml on synthetic data with 2 workers, then, while it trains: scales to 3
#     (a third worker_joined), refuses a worker with a wrong token (exit 1, auth_failed), kills a
#     worker with SIGKILL (restarted, rejoins), kills the coordinator with SIGKILL (restarted,
#     resumes from its checkpoint, the workers rejoin). Then the run must finish: every container
#     exits 0, and the run folder copied out of the volume holds metrics.json and the rest.
#  5. Tears down containers, networks, volumes and images it made, and the daemon it started.
#
# --install-deps: apt-get install docker.io and docker-compose when missing (needs root).
# Environment: E2E_ARTIFACTS=DIR (copy the run folder and the coordinator's log there),
# E2E_LIMIT_TRAIN (synthetic training images, default 24000), E2E_KEEP=1 (leave the
# stack and daemon up for a look; prints how to reach them), E2E_STORAGE_DRIVER (for a daemon this
# script starts: default overlay2 where it works, else vfs).
# Exit status: 0 when every check passed; 1 with a "FAIL:" line naming the check otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
started=$SECONDS
limit_train=${E2E_LIMIT_TRAIN:-24000}
project=dtraine2e$$
image=dtrain:e2e-$$
base_image=dtrain-base:node20

log() { printf '[compose-e2e %4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}

install_deps=0
for arg in "$@"; do
  case $arg in
    --install-deps) install_deps=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument \"$arg\" (see --help)" ;;
  esac
done

# The caller's DTRAIN_* settings must not change what this test runs.
while read -r name; do unset "$name"; done < <(compgen -e | grep '^DTRAIN_' || true)

# ---------------------------------------------------------------------------------------------
# Tools
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
  if ((install_deps)); then
    [[ $(id -u) == 0 ]] || fail "--install-deps needs root"
    log "installing docker.io and docker-compose with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null
  else
    fail "dockerd or docker-compose is missing: apt-get install docker.io docker-compose (or pass --install-deps)"
  fi
fi
# Debian's client matches Debian's daemon; another `docker` earlier in PATH may be a newer client
# or a stand-in.
docker_bin=$(command -v docker || true)
[[ -x /usr/bin/docker ]] && docker_bin=/usr/bin/docker
[[ -n $docker_bin ]] || fail "no docker client: apt-get install docker.io"
docker() { "$docker_bin" "$@"; }
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

work=$(mktemp -d /tmp/dtrain-e2e.XXXXXX)
dockerd_pid=
made_docker0=0

# ---------------------------------------------------------------------------------------------
# Teardown, on every exit
compose() { docker-compose -p "$project" --env-file "$work/e2e.env" -f "$root/docker-compose.yml" "$@"; }

teardown() {
  local status=$?
  set +e
  if [[ ${E2E_KEEP:-0} == 1 ]]; then
    log "E2E_KEEP=1: leaving everything up. DOCKER_HOST=${DOCKER_HOST:-} ; files in $work"
    log "  docker-compose -p $project --env-file $work/e2e.env -f $root/docker-compose.yml logs"
    exit "$status"
  fi
  if ((status != 0)) && [[ -f $work/e2e.env ]]; then
    log "logs of the stack (last 40 lines of each service):"
    compose logs --no-color --tail 40 >&2 2>/dev/null
  fi
  if [[ -f $work/e2e.env ]]; then
    log "teardown: docker-compose down --volumes"
    compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1
  fi
  docker image rm -f "$image" >/dev/null 2>&1
  if [[ -z $dockerd_pid && -f $work/images-before ]]; then
    # On a daemon that was already running: the base image, and the untagged images that this
    # build left behind (its first stage, intermediate layers), none of which existed before.
    docker image rm -f "$base_image" >/dev/null 2>&1
    comm -13 "$work/images-before" <(docker images -aq --no-trunc --filter dangling=true | sort -u) |
      xargs -r docker image rm >/dev/null 2>&1
  fi
  if [[ -n $dockerd_pid ]]; then
    # Images only live in this daemon's data root, which goes with it.
    log "teardown: stopping the dockerd this script started (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$dockerd_pid" 2>/dev/null && kill -KILL "$dockerd_pid"
    ((made_docker0)) && ip link delete docker0 2>/dev/null
    # What the daemon mounted under its folders (its data root, the default network namespace).
    awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  fi
  rm -rf "$work"
  if ((status == 0)); then log "PASS in $((SECONDS - started)) s"; else log "exit status $status"; fi
  exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# 1. A Docker daemon: started here when none answers
start_dockerd() {
  local driver=$1
  mkdir -p "$work/data" "$work/exec"
  # Leave the machine's network settings alone: without these flags dockerd adds NAT and filter
  # rules to the host's iptables and turns on net.ipv4.ip_forward for the whole machine (it does
  # both here, and the second even with --iptables=false). Containers on one compose network
  # still reach each other over their bridge, and the embedded DNS still resolves service names;
  # they get no route out, which this test does not need (the build uses host networking).
  dockerd --storage-driver="$driver" --iptables=false --ip-forward=false --ip-masq=false \
    --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
    -H "unix://$work/docker.sock" >"$work/dockerd-$driver.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$work/docker.sock"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -TERM "$dockerd_pid" 2>/dev/null
  wait "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=
  return 1
}

# ---------------------------------------------------------------------------------------------
# 2. The base image: this machine's Node.js in a minimal root filesystem, kept as a tar file
# libraries_of FILE: the shared libraries ldd finds for FILE, and the loader.
libraries_of() {
  { ldd "$1" 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u
}

make_base_rootfs() {
  local rootfs=$work/rootfs node npm_cli npm_dir bin lib
  node=$(readlink -f "$(command -v node)")
  npm_cli=$(readlink -f "$(command -v npm)")
  npm_dir=${npm_cli%/bin/npm-cli.js}
  [[ -f $npm_dir/package.json ]] || fail "cannot find npm's folder from $npm_cli"
  mkdir -p "$rootfs"/{usr/bin,usr/lib,usr/lib64,usr/sbin,etc/ssl/certs,tmp,root,home/node,proc,sys,dev}
  # Debian's merged /usr: /bin, /lib and /lib64 are links into /usr.
  ln -s usr/bin "$rootfs/bin"
  ln -s usr/lib "$rootfs/lib"
  ln -s usr/lib64 "$rootfs/lib64"
  ln -s usr/sbin "$rootfs/sbin"
  copy() { mkdir -p "$rootfs$(dirname "$1")" && cp -L "$1" "$rootfs$1"; }
  local bins=("$node" "$(readlink -f /bin/sh)")
  for bin in env mkdir chown ln rm cp cat ls; do bins+=("$(readlink -f "$(command -v "$bin")")"); done
  for bin in "${bins[@]}"; do
    copy "$bin"
    # Every library it loads, and the loader itself, at the paths ldd names.
    for lib in $(libraries_of "$bin"); do copy "$lib"; done
  done
  # The native addons that npm ci will install load libraries of their own (the canvas binding
  # needs librt): take them from this checkout's node_modules, built from the same lockfile.
  local addons=0
  while IFS= read -r -d '' bin; do
    addons=$((addons + 1))
    for lib in $(libraries_of "$bin"); do copy "$lib"; done
  done < <(find "$root/node_modules" -name '*.node' -path '*linux-x64*' ! -name '*musl*' -print0 2>/dev/null)
  ((addons > 0)) || fail "no native addons under $root/node_modules: run npm ci first"
  [[ -e $rootfs/usr/bin/sh ]] || ln -s "$(basename "$(readlink -f /bin/sh)")" "$rootfs/usr/bin/sh"
  [[ -e $rootfs/usr/bin/node ]] || ln -s "$node" "$rootfs/usr/bin/node"
  mkdir -p "$rootfs$(dirname "$npm_dir")"
  cp -a "$npm_dir" "$rootfs$npm_dir"
  ln -s "$npm_dir/bin/npm-cli.js" "$rootfs/usr/bin/npm"
  ln -s "$npm_dir/bin/npx-cli.js" "$rootfs/usr/bin/npx"
  # npm's global config (which CA file to trust, say) and the CA bundle itself.
  if [[ -f /usr/etc/npmrc ]]; then copy /usr/etc/npmrc; fi
  copy /etc/ssl/certs/ca-certificates.crt
  printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnode:x:1000:\n' >"$rootfs/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  chmod 1777 "$rootfs/tmp"
  chmod 700 "$rootfs/root"
  chown 1000:1000 "$rootfs/home/node"
  tar --numeric-owner -C "$rootfs" -cf "$work/rootfs.tar" .
  rm -rf "$rootfs"
}

# import_base: the tar as $base_image, and proof that it runs Node.js 20 as user node.
import_base() {
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' "$work/rootfs.tar" "$base_image" >/dev/null &&
    docker run --rm --user node "$base_image" node -e "process.exit(process.version.startsWith('v20') ? 0 : 1)"
}

log "making a root filesystem from this machine's Node.js $(node --version)"
make_base_rootfs

# The base image doubles as the test that the daemon's storage driver works.
if docker info >/dev/null 2>&1; then
  log "using the running Docker daemon (${DOCKER_HOST:-default socket})"
  docker images -aq --no-trunc | sort -u >"$work/images-before"
  import_base || fail "$base_image does not run Node.js 20 as user node"
else
  [[ $(id -u) == 0 ]] || fail "no Docker daemon answers, and starting one needs root"
  ip link show docker0 >/dev/null 2>&1 || made_docker0=1
  read -r -a drivers <<<"${E2E_STORAGE_DRIVER:-overlay2 vfs}"
  for driver in "${drivers[@]}"; do
    if start_dockerd "$driver"; then
      if import_base >"$work/probe-$driver.log" 2>&1; then
        log "started dockerd (pid $dockerd_pid, storage driver $driver) on $DOCKER_HOST"
        break
      fi
      kill -TERM "$dockerd_pid"
      wait "$dockerd_pid" 2>/dev/null || true
      dockerd_pid=
    fi
    log "dockerd does not work with storage driver $driver here (logs: $work/dockerd-$driver.log)"
  done
  [[ -n $dockerd_pid ]] || fail "could not start a working dockerd"
fi
log "base image $base_image: $(docker image inspect -f '{{.Size}}' "$base_image" | awk '{printf "%.0f MB", $1 / 1e6}')"

# ---------------------------------------------------------------------------------------------
# 3. The app image, built the way a user builds it
# Compose mounts a file secret as it is on the host (its uid, gid and mode settings are for
# swarm only), so the unprivileged user in the container must be able to read it: the file is
# world-readable, inside a folder that only root can enter.
chmod 700 "$work"
od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$work/token"
chmod 444 "$work/token"
cat >"$work/e2e.env" <<EOF
DTRAIN_IMAGE=$image
DTRAIN_BASE_IMAGE=$base_image
DTRAIN_TOKEN_SECRET_FILE=$work/token
DTRAIN_RUN_NAME=e2e
DTRAIN_DATASET=synthetic
DTRAIN_MODEL=lenet
DTRAIN_EPOCHS=1
DTRAIN_LIMIT_TRAIN=$limit_train
DTRAIN_LIMIT_TEST=500
DTRAIN_MIN_WORKERS=2
DTRAIN_CHECKPOINT_EVERY=20
DTRAIN_STEP_TIMEOUT=30
EOF

log "docker-compose config (docker-compose.yml, and with docker-compose.gpu.yml)"
compose config -q || fail "docker-compose config rejects docker-compose.yml"
compose -f "$root/docker-compose.gpu.yml" config -q || fail "docker-compose config rejects docker-compose.gpu.yml"

build_started=$SECONDS
log "docker-compose build (npm ci against package-lock.json, from $base_image)"
compose build --quiet coordinator >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; fail "docker-compose build failed"; }
log "image $image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}'), built in $((SECONDS - build_started)) s"
[[ $(docker image inspect -f '{{.Config.User}}' "$image") == node ]] || fail "the image does not run as user node"
docker run --rm --entrypoint node "$image" -e "
  try { require.resolve('webgpu'); console.error('the default image holds the optional webgpu package'); process.exit(1); } catch {}
  require('child_process').execFileSync('node', ['bin/dtrain.js', '--version'], { stdio: 'ignore' });
" || fail "the image cannot run dtrain, or holds optional GPU packages"

# ---------------------------------------------------------------------------------------------
# 4. The stack
# docker logs, not docker-compose logs: it is polled every second, and the Go client is cheap.
coordinator_logs() { docker logs "$coordinator" 2>/dev/null; }
# count EVENT: how many coordinator log lines carry "event":"EVENT" (restarts included).
count() { coordinator_logs | grep -c "\"event\":\"$1\"" || true; }
# wait_for EVENT N SECONDS: until the coordinator has logged EVENT at least N times.
wait_for() {
  local event=$1 want=$2 deadline=$((SECONDS + $3)) have
  while :; do
    have=$(count "$event")
    ((have >= want)) && return 0
    ((SECONDS < deadline)) || fail "waited $3 s for $want x $event in the coordinator's logs, saw $have"
    (($(restarts "$coordinator") <= coordinator_restarts)) || fail "the coordinator keeps restarting: $(coordinator_logs | tail -3)"
    sleep 1
  done
}
still_training() {
  (($(count run_finished) == 0)) || fail "the run finished before the $1 check: raise E2E_LIMIT_TRAIN (now $limit_train)"
}
container_of() { compose ps -q "$1" | sed -n "${2:-1}p"; }
host_pid() { docker inspect -f '{{.State.Pid}}' "$1"; }
restarts() { docker inspect -f '{{.RestartCount}}' "$1"; }

coordinator_restarts=0
log "docker-compose up -d --scale worker=2 ($limit_train synthetic images, lenet, 1 epoch)"
compose up -d --scale worker=2 >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "docker-compose up failed"; }
coordinator=$(container_of coordinator)
[[ -n $coordinator ]] || fail "no coordinator container after docker-compose up"
wait_for listening 1 120
wait_for worker_joined 2 120
wait_for step 1 60
log "2 workers joined by service name over the compose network; training"

log "docker-compose up -d --scale worker=3 --no-recreate"
still_training "scale"
compose up -d --scale worker=3 --no-recreate >>"$work/up.log" 2>&1 || fail "scaling to 3 workers failed"
wait_for worker_joined 3 120
log "a third worker joined mid-run"

log "a worker with a wrong token from the environment (DTRAIN_TOKEN_FILE= DTRAIN_TOKEN=...)"
still_training "wrong token"
set +e
compose run --rm --no-deps -T -e DTRAIN_TOKEN_FILE= -e DTRAIN_TOKEN=not-the-right-token worker >"$work/refused.log" 2>&1
refused=$?
set -e
((refused == 1)) || { cat "$work/refused.log" >&2; fail "a worker with a wrong token exited with $refused, not 1"; }
wait_for auth_failed 1 30
log "refused: exit 1, auth_failed logged"

victim=$(container_of worker 1)
joined=$(count worker_joined)
log "SIGKILL to worker container ${victim:0:12}'s process"
still_training "worker crash"
kill -KILL "$(host_pid "$victim")"
deadline=$((SECONDS + 90))
until (($(restarts "$victim") >= 1)) && (($(count worker_joined) > joined)); do
  ((SECONDS < deadline)) || fail "the killed worker was not restarted and did not rejoin within 90 s"
  sleep 1
done
log "the worker was restarted (restart: on-failure) and rejoined"

deadline=$((SECONDS + 45))
until [[ $(docker inspect -f '{{.State.Health.Status}}' "$coordinator") == healthy ]]; do
  ((SECONDS < deadline)) || fail "the coordinator's healthcheck is $(docker inspect -f '{{.State.Health.Status}}' "$coordinator"), not healthy"
  sleep 1
done
log "the coordinator's healthcheck says healthy"

wait_for checkpoint 1 60
still_training "coordinator crash"
resumed=$(count resumed)
log "SIGKILL to the coordinator's process"
coordinator_restarts=1
kill -KILL "$(host_pid "$coordinator")"
deadline=$((SECONDS + 120))
until (($(restarts "$coordinator") >= 1)) && (($(count resumed) > resumed)); do
  ((SECONDS < deadline)) || fail "the coordinator was not restarted and resumed within 120 s"
  sleep 1
done
log "the coordinator was restarted and resumed from its checkpoint"

log "waiting for the run to finish"
wait_for run_finished 1 600
deadline=$((SECONDS + 60))
while compose ps -q | xargs -r docker inspect -f '{{.State.Running}}' | grep -q true; do
  ((SECONDS < deadline)) || fail "containers still running 60 s after run_finished: $(compose ps)"
  sleep 1
done
after=$(coordinator_logs | sed -n '/"event":"resumed"/,$p' | grep -c '"event":"worker_joined"' || true)
((after >= 2)) || fail "only $after worker(s) rejoined the restarted coordinator"
for c in $(compose ps -q); do
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  ((code == 0)) || fail "container $(docker inspect -f '{{.Name}}' "$c") exited with $code, not 0"
done
log "every container exited 0 ($after workers finished with the restarted coordinator)"

for event in listening worker_joined step checkpoint epoch evaluated resumed run_finished; do
  (($(count "$event") >= 1)) || fail "no $event event in the coordinator's logs"
done
coordinator_logs | grep '"event":"run_finished"' | tail -1 | grep -o '"test_accuracy":[0-9.]*' >&2 || true

# The run folder, copied out of the named volume.
docker cp "$coordinator:/runs/e2e" "$work/run" || fail "could not copy /runs/e2e out of the runs volume"
for f in history.json metrics.json summary.txt loss.png accuracy.png predictions.png checkpoint; do
  [[ -e $work/run/$f ]] || fail "the run folder lacks $f (has: $(ls "$work/run" | tr '\n' ' '))"
done
node -e "
  const m = JSON.parse(require('fs').readFileSync('$work/run/metrics.json', 'utf8'));
  for (const k of ['test_accuracy', 'test_loss']) if (typeof m[k] !== 'number') { console.error('metrics.json has no number ' + k); process.exit(1); }
" || fail "metrics.json is not what a finished run writes"
log "run folder: $(ls "$work/run" | tr '\n' ' ')"
if [[ -n ${E2E_ARTIFACTS:-} ]]; then
  mkdir -p "$E2E_ARTIFACTS"
  cp -r "$work/run" "$E2E_ARTIFACTS/run"
  coordinator_logs >"$E2E_ARTIFACTS/coordinator.log"
  log "run folder and coordinator log copied to $E2E_ARTIFACTS"
fi
