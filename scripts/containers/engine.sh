#!/usr/bin/env bash
# engine.sh start|stop|env: a private Docker engine with Compose v2, for the compose end-to-end
# test (test/compose-e2e.test.ts) on a machine that has no engine. Test scaffolding, not product.
#
# `start` installs Debian's docker.io (and debootstrap, which standins.sh needs) if missing,
# starts a dockerd of its own (data root, exec root and socket under $SPINMESH_ENGINE_DIR;
# --iptables=false --ip-forward=false --ip-masq=false, so the host's firewall and sysctls are
# untouched; no default bridge and an address pool of its own, so it cannot collide with another
# engine on this machine; containers still reach each other on the compose network, and Docker's
# DNS resolves service names and replicas), and fetches Compose v2 (Debian trixie's
# docker-compose package, a static binary) into $DOCKER_CONFIG/cli-plugins with a private apt
# configuration (the host's apt sources are not changed). It prints the variables to export.
# `stop` ends the dockerd that `start` started; the data root stays, so the stand-in images and
# the build cache serve the next run (delete $SPINMESH_ENGINE_DIR to reclaim the space).
#
# What differs from a machine with a registry: nothing can be pulled, so base images are built
# locally (standins.sh); the engine's bridges have no NAT, so a build that needs apt or npm runs
# with the host's network.
set -euo pipefail
ENGINE_DIR=${SPINMESH_ENGINE_DIR:-/var/tmp/spinmesh-engine}
export DOCKER_HOST=unix://$ENGINE_DIR/docker.sock
export DOCKER_CONFIG=$ENGINE_DIR/config

env_lines() { printf 'export DOCKER_HOST=%s\nexport DOCKER_CONFIG=%s\n' "$DOCKER_HOST" "$DOCKER_CONFIG"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_missing() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "engine: installing ${missing[*]} from Debian" >&2
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

start() {
  mkdir -p "$ENGINE_DIR" "$DOCKER_CONFIG/cli-plugins"
  install_missing
  command -v docker >/dev/null || { echo "engine: no docker CLI (Debian's docker.io brings one)" >&2; exit 1; }
  if ! docker info >/dev/null 2>&1; then
    echo "engine: starting dockerd under $ENGINE_DIR" >&2
    rm -f "$ENGINE_DIR/docker.sock"
    setsid dockerd --data-root "$ENGINE_DIR/root" --exec-root "$ENGINE_DIR/exec" \
      -p "$ENGINE_DIR/dockerd.pid" -H "$DOCKER_HOST" --iptables=false --ip-forward=false \
      --ip-masq=false --bridge none --default-address-pool base=10.213.0.0/16,size=24 \
      --storage-driver overlay2 >"$ENGINE_DIR/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 90); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "engine: dockerd did not start:" >&2; tail -5 "$ENGINE_DIR/dockerd.log" >&2; exit 1; }
  fi
  if ! docker compose version >/dev/null 2>&1; then
    echo "engine: fetching Compose v2" >&2
    local A=$ENGINE_DIR/apt M
    M=$( { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } | sed -n 's/^URIs:[[:space:]]*//p'
         { grep -h '^deb ' /etc/apt/sources.list 2>/dev/null || true; } | awk '{print $2}')
    M=$(printf '%s\n' "$M" | { grep -v security || true; } | head -n 1)
    [ -n "$M" ] || { echo "engine: no Debian mirror in the apt sources" >&2; exit 1; }
    rm -rf "$A"; mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/x"; : >"$A/status"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $M trixie main" >"$A/sources.list"
    local AO=(-o "Dir::Etc::sourcelist=$A/sources.list" -o Dir::Etc::sourceparts=/nonexistent
      -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache" -o "Dir::State::status=$A/status"
      -o Debug::NoLocking=1)
    (cd "$A" && apt-get "${AO[@]}" update >&2 && apt-get "${AO[@]}" download docker-compose >&2 \
      && dpkg -x docker-compose_*.deb x && cp x/usr/libexec/docker/cli-plugins/docker-compose "$DOCKER_CONFIG/cli-plugins/")
    rm -rf "$A"
    docker compose version >/dev/null 2>&1 || { echo "engine: no Compose v2" >&2; exit 1; }
  fi
  env_lines
}

stop() {
  local pid
  pid=$(cat "$ENGINE_DIR/dockerd.pid" 2>/dev/null || true)
  [ -n "$pid" ] || { echo "engine: no dockerd started here" >&2; return 0; }
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$pid" 2>/dev/null; then echo "engine: dockerd $pid did not stop" >&2; exit 1; fi
  rm -f "$ENGINE_DIR/dockerd.pid"
  # dockerd leaves its default network namespace mounted under the exec root.
  local m
  for m in $(awk -v d="$ENGINE_DIR/exec/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_lines ;;
  *) echo "usage: engine.sh start|stop|env" >&2; exit 2 ;;
esac
