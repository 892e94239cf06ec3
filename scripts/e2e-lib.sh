# Shared by the end-to-end tests of the Docker deployment (compose-e2e.sh, swarm-e2e.sh): sourced,
# never run. It gives them one way to log and fail, to find or start a Docker daemon without
# touching the machine's network settings, to make a base image without an image registry, and to
# clean up after themselves.
#
# The sourcing script sets, before calling anything here:
#   root        the checkout's top folder
#   e2e_name    the prefix of every log line (e.g. compose-e2e)
#   image       the app image it builds (removed at the end)
# defines its EXIT trap, then calls e2e_setup "$@". It then has: $work (a private temp folder), $install_deps,
# docker() (Debian's client where present), $base_image once e2e_start_daemon has run, and
# e2e_teardown_docker to call at the end of its own EXIT trap.

started=$SECONDS
base_image=dtrain-base:node20
dockerd_pid=
# Network interfaces that the daemon started here made, deleted after it stops.
made_links=()
install_deps=0
work=
docker_bin=

log() { printf '[%s %4ds] %s\n' "$e2e_name" "$((SECONDS - started))" "$*" >&2; }
# Why the test failed, repeated as the last line after the teardown's output (CI shows the tail).
failed_because=
fail() {
  failed_because=$*
  log "FAIL: $*"
  exit 1
}

# e2e_setup "$@": the arguments (--install-deps, --help), a clean DTRAIN_* environment, a temp folder.
e2e_setup() {
  local arg
  for arg in "$@"; do
    case $arg in
      --install-deps) install_deps=1 ;;
      -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
      *) fail "unknown argument \"$arg\" (see --help)" ;;
    esac
  done
  # The caller's DTRAIN_* settings must not change what this test runs.
  local name
  while read -r name; do unset "$name"; done < <(compgen -e | grep '^DTRAIN_' || true)
  export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
  # A command that stops the script under `set -e` names itself (not one run under `set +e`).
  set -E
  trap 'e2e_status=$?; [[ $- == *e* ]] && failed_because="\"$BASH_COMMAND\" exited with $e2e_status (line $LINENO)" && log "FAIL: $failed_because"' ERR
  work=$(mktemp -d "/tmp/dtrain-$e2e_name.XXXXXX")
  # Secrets are written here: only root may enter.
  chmod 700 "$work"
}

# e2e_require_tools COMMAND:PACKAGE...: apt-get installs the packages of missing commands when
# --install-deps was given, and fails naming them otherwise.
e2e_require_tools() {
  local spec missing=() packages=()
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null || { missing+=("${spec%%:*}"); packages+=("${spec#*:}"); }
  done
  if ((${#missing[@]})); then
    ((install_deps)) || fail "${missing[*]} missing: apt-get install ${packages[*]} (or pass --install-deps)"
    [[ $(id -u) == 0 ]] || fail "--install-deps needs root"
    log "installing ${packages[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  fi
  # Debian's client matches Debian's daemon; another `docker` earlier in PATH may be a newer client
  # or a stand-in.
  docker_bin=$(command -v docker || true)
  [[ -x /usr/bin/docker ]] && docker_bin=/usr/bin/docker
  [[ -n $docker_bin ]] || fail "no docker client: apt-get install docker.io"
}
docker() { "$docker_bin" "$@"; }

# ---------------------------------------------------------------------------------------------
# A Docker daemon: started here when none answers
e2e_start_dockerd() {
  local driver=$1
  mkdir -p "$work/data" "$work/exec"
  # Leave the machine's network settings alone: without these flags dockerd adds NAT and filter
  # rules to the host's iptables and turns on net.ipv4.ip_forward for the whole machine (it does
  # both here, and the second even with --iptables=false). Containers on one network still reach
  # each other over their bridge (or, in swarm mode, their overlay), and the embedded DNS still
  # resolves service names; they get no route out, which these tests do not need (builds use
  # host networking).
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
# The base image: this machine's Node.js in a root filesystem, kept as a tar file. Two kinds
# ($base_rootfs, set by the sourcing script): "minimal" (default), only Node.js, npm, /bin/sh and
# the libraries they load; "debootstrap", Debian's minbase of this machine's release from the
# mirror apt already uses, so that apt-get works in the image (the Dockerfile's native kernels).
# libraries_of FILE: the shared libraries ldd finds for FILE, and the loader.
libraries_of() {
  { ldd "$1" 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u
}

# copy_into ROOTFS FILE: FILE at the same path under ROOTFS, links followed.
copy_into() { mkdir -p "$1$(dirname "$2")" && cp -L "$2" "$1$2"; }

minimal_rootfs() {
  local rootfs=$1 bin lib
  mkdir -p "$rootfs"/{usr/bin,usr/lib,usr/lib64,usr/sbin,etc/ssl/certs,tmp,root,home/node,proc,sys,dev}
  # Debian's merged /usr: /bin, /lib and /lib64 are links into /usr.
  ln -s usr/bin "$rootfs/bin"
  ln -s usr/lib "$rootfs/lib"
  ln -s usr/lib64 "$rootfs/lib64"
  ln -s usr/sbin "$rootfs/sbin"
  local bins=("$(readlink -f "$(command -v node)")" "$(readlink -f /bin/sh)")
  for bin in env mkdir chown ln rm cp cat ls; do bins+=("$(readlink -f "$(command -v "$bin")")"); done
  for bin in "${bins[@]}"; do
    copy_into "$rootfs" "$bin"
    # Every library it loads, and the loader itself, at the paths ldd names.
    for lib in $(libraries_of "$bin"); do copy_into "$rootfs" "$lib"; done
  done
  # The native addons that npm ci will install load libraries of their own (the canvas binding
  # needs librt): take them from this checkout's node_modules, built from the same lockfile.
  local addons=0
  while IFS= read -r -d '' bin; do
    addons=$((addons + 1))
    for lib in $(libraries_of "$bin"); do copy_into "$rootfs" "$lib"; done
  done < <(find "$root/node_modules" -name '*.node' -path '*linux-x64*' ! -name '*musl*' -print0 2>/dev/null)
  ((addons > 0)) || fail "no native addons under $root/node_modules: run npm ci first"
  [[ -e $rootfs/usr/bin/sh ]] || ln -s "$(basename "$(readlink -f /bin/sh)")" "$rootfs/usr/bin/sh"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\n' >"$rootfs/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  chmod 1777 "$rootfs/tmp"
  chmod 700 "$rootfs/root"
}

# debian_mirror CODENAME: the URI that apt's sources give for that release (deb822 first).
debian_mirror() {
  local codename=$1 uri
  uri=$(awk -v s="$codename" '/^URIs:/ { u = $2 } /^Suites:/ && index($0 " ", " " s " ") { print u; exit }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [[ -n $uri ]] || uri=$(awk -v s="$codename" '$1 == "deb" && $3 == s { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  [[ -n $uri ]] || fail "no mirror for $codename in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list"
  echo "$uri"
}

debootstrap_rootfs() {
  local rootfs=$1 codename mirror
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  mirror=$(debian_mirror "$codename")
  log "debootstrap --variant=minbase $codename from $mirror"
  debootstrap --variant=minbase "$codename" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap failed (log above)"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
  # Node's headers, which native/build.mjs compiles the addon against, next to the binary as in
  # Node's own tarball.
  local include
  include=$(dirname "$(readlink -f "$(command -v node)")")/../include/node
  [[ -f $include/node_api.h ]] || fail "Node's headers are not at $include"
  mkdir -p "$rootfs/usr/include"
  cp -a "$(readlink -f "$include")" "$rootfs/usr/include/node"
}

make_base_rootfs() {
  local rootfs=$work/rootfs node npm_cli npm_dir
  node=$(readlink -f "$(command -v node)")
  npm_cli=$(readlink -f "$(command -v npm)")
  npm_dir=${npm_cli%/bin/npm-cli.js}
  [[ -f $npm_dir/package.json ]] || fail "cannot find npm's folder from $npm_cli"
  case ${base_rootfs:-minimal} in
    minimal) minimal_rootfs "$rootfs" ;;
    debootstrap) debootstrap_rootfs "$rootfs" ;;
    *) fail "unknown base_rootfs \"$base_rootfs\" (minimal or debootstrap)" ;;
  esac
  [[ -e $rootfs$node ]] || copy_into "$rootfs" "$node"
  [[ -e $rootfs/usr/bin/node ]] || ln -s "$node" "$rootfs/usr/bin/node"
  mkdir -p "$rootfs$(dirname "$npm_dir")"
  cp -a "$npm_dir" "$rootfs$npm_dir"
  ln -sf "$npm_dir/bin/npm-cli.js" "$rootfs/usr/bin/npm"
  ln -sf "$npm_dir/bin/npx-cli.js" "$rootfs/usr/bin/npx"
  # npm's global config (which CA file to trust, say) and the CA bundle itself.
  if [[ -f /usr/etc/npmrc ]]; then copy_into "$rootfs" /usr/etc/npmrc; fi
  copy_into "$rootfs" /etc/ssl/certs/ca-certificates.crt
  echo 'node:x:1000:1000::/home/node:/bin/sh' >>"$rootfs/etc/passwd"
  echo 'node:x:1000:' >>"$rootfs/etc/group"
  mkdir -p "$rootfs/home/node"
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

# e2e_start_daemon: a daemon that answers (the running one, or one started here) holding
# $base_image. The base image doubles as the test that the daemon's storage driver works.
e2e_start_daemon() {
  log "making a root filesystem from this machine's Node.js $(node --version)"
  make_base_rootfs
  if docker info >/dev/null 2>&1; then
    log "using the running Docker daemon (${DOCKER_HOST:-default socket})"
    docker images -aq --no-trunc | sort -u >"$work/images-before"
    import_base || fail "$base_image does not run Node.js 20 as user node"
  else
    [[ $(id -u) == 0 ]] || fail "no Docker daemon answers, and starting one needs root"
    ip link show docker0 >/dev/null 2>&1 || made_links+=(docker0)
    local drivers driver
    read -r -a drivers <<<"${E2E_STORAGE_DRIVER:-overlay2 vfs}"
    for driver in "${drivers[@]}"; do
      if e2e_start_dockerd "$driver"; then
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
}

# e2e_check_image: the app image runs dtrain as user node, without the optional GPU packages.
e2e_check_image() {
  [[ $(docker image inspect -f '{{.Config.User}}' "$image") == node ]] || fail "the image does not run as user node"
  docker run --rm --entrypoint node "$image" -e "
    try { require.resolve('webgpu'); console.error('the default image holds the optional webgpu package'); process.exit(1); } catch {}
    require('child_process').execFileSync('node', ['bin/dtrain.js', '--version'], { stdio: 'ignore' });
  " || fail "the image cannot run dtrain, or holds optional GPU packages"
}

# ---------------------------------------------------------------------------------------------
# Watching the coordinator's log. The sourcing script defines coordinator_logs (every line the
# coordinator has logged, restarts included), and may define wait_check (run every second while
# waiting; it fails the test when something went wrong meanwhile).
# count EVENT: how many coordinator log lines carry "event":"EVENT".
count() { coordinator_logs | grep -c "\"event\":\"$1\"" || true; }
# wait_for EVENT N SECONDS: until the coordinator has logged EVENT at least N times.
wait_for() {
  local event=$1 want=$2 deadline=$((SECONDS + $3)) have
  while :; do
    have=$(count "$event")
    ((have >= want)) && return 0
    ((SECONDS < deadline)) || fail "waited $3 s for $want x $event in the coordinator's logs, saw $have"
    if declare -F wait_check >/dev/null; then wait_check; fi
    sleep 1
  done
}
# still_training CHECK: fails when the run ended before CHECK could be made.
still_training() {
  (($(count run_finished) == 0)) || fail "the run finished before the $1 check: raise E2E_LIMIT_TRAIN (now $limit_train)"
}

# host_pid CONTAINER: the container's main process as the host sees it.
host_pid() { docker inspect -f '{{.State.Pid}}' "$1"; }

# e2e_teardown_docker STATUS: the images made here, the daemon started here and its bridge, the
# temp folder; then PASS or the exit status. Ends the script with STATUS.
e2e_teardown_docker() {
  local status=$1
  [[ -n $work ]] || exit "$status"
  if [[ -z $dockerd_pid && -f $work/images-before ]]; then
    docker image rm -f "$image" >/dev/null 2>&1
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
    local link
    for link in "${made_links[@]}"; do ip link delete "$link" 2>/dev/null; done
    # What the daemon mounted under its folders (its data root, the network namespaces).
    awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  fi
  rm -rf "$work"
  if ((status == 0)); then log "PASS in $((SECONDS - started)) s"
  elif [[ -n $failed_because ]]; then log "exit status $status, FAIL: $failed_because"
  else log "exit status $status"; fi
  exit "$status"
}
