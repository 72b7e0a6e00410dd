#!/usr/bin/env bash
# standins.sh: local stand-in images for the registry images that docker-compose.yml and
# deploy/Dockerfile name, for the compose end-to-end test on a machine that reaches Debian's apt
# repositories and the npm registry but no container registry (nothing can be pulled).
# Test scaffolding: the stand-ins never go into the product.
#
# It builds, into whatever engine `docker` talks to (DOCKER_HOST is honoured), under the exact
# names the project references:
#   node:20.20.2-bookworm        Debian bookworm (debootstrap minbase) + ca-certificates, curl,
#                                wget, git, xz-utils, procps (a subset of buildpack-deps) + this
#                                machine's own node binary, its headers in /usr/local/include/node
#                                (where the official image keeps them), npm $NPM_VERSION from the
#                                npm registry, user/group `node` 1000:1000, the official
#                                docker-entrypoint.sh, CMD node
#   node:20.20.2-bookworm-slim   the same without the extra Debian packages
#   redis:7.2.5-bookworm         Debian's redis-server/redis-cli (7.0.x) on PATH, gosu, the official
#                                docker-entrypoint.sh, WORKDIR/VOLUME /data, CMD redis-server
#   prom/prometheus:v2.53.2      Debian's prometheus (2.42.x) as /bin/prometheus, GNU wget for the
#                                healthcheck, USER nobody, WORKDIR/VOLUME /prometheus, the official
#                                ENTRYPOINT and CMD
# Stand-in accommodations of THIS environment (not what the official images carry): the node
# images get a global npmrc pointing at a copy of this machine's npm CA file (`npm config get
# cafile`), and every image gets this machine's apt settings that disable Release-file date
# checks (apt.conf.d files mentioning Check-Valid-Until), because the apt mirror here serves a
# dated snapshot. Versions differ from the real ones (Debian's redis 7.0 and prometheus 2.42;
# npm as chosen below); the node binary must be 20.20.2 for the names to be honest.
# Grafana has no Debian package: no stand-in (leave the grafana service out).
#
# Each carries the label org.spinmesh.standin, so a test can say which images were stand-ins.
# Idempotent: an image that exists is kept (FORCE=1 rebuilds them all). Builds run with the
# classic builder and --network host (the engine's bridge has no NAT here).
# Env: DOCKER (default docker), NPM_VERSION (default 10.8.2, the npm bundled with node 20.17+),
#      DEBIAN_MIRROR (default: the first Debian URI in this machine's apt sources),
#      DEBIAN_SECURITY_MIRROR (default: the URI of its security suite), STANDIN_WORK (scratch dir).
set -euo pipefail

DOCKER=${DOCKER:-docker}
FORCE=${FORCE:-0}
NPM_VERSION=${NPM_VERSION:-10.8.2}
# The machine's own apt sources name the mirrors (deb822 .sources files or sources.list).
apt_uris() { { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } | sed -n 's/^URIs:[[:space:]]*//p'
  { grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } | awk '{print $2}'; }
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(apt_uris | { grep -v security || true; } | head -n 1)}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(apt_uris | { grep security || true; } | head -n 1)}
[ -n "$DEBIAN_MIRROR" ] || { echo "standins: no Debian mirror found in the apt sources; set DEBIAN_MIRROR" >&2; exit 1; }
BASE=localhost/standin-debian:bookworm
export DOCKER_BUILDKIT=0

log() { printf '[standins] %s\n' "$*" >&2; }
have() { [ "$FORCE" != 1 ] && $DOCKER image inspect "$1" >/dev/null 2>&1; }

WORK=${STANDIN_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/standins.XXXXXX")}
mkdir -p "$WORK"
cleanup() { [ -z "${STANDIN_WORK:-}" ] && rm -rf "$WORK"; return 0; }
trap cleanup EXIT

NODE_BIN=$(readlink -f "$(command -v node)")
NODE_VERSION=$("$NODE_BIN" -p 'process.versions.node')
NODE_PREFIX=$(dirname "$(dirname "$NODE_BIN")")
NODE_MAJOR_MINOR_PATCH=20.20.2
if [ "$NODE_VERSION" != "$NODE_MAJOR_MINOR_PATCH" ]; then
  log "warning: this machine's node is $NODE_VERSION, not $NODE_MAJOR_MINOR_PATCH; the stand-in names will lie"
fi
NPM_CA=$(npm config get cafile 2>/dev/null || true)
case "$NPM_CA" in ''|null|undefined) NPM_CA=/etc/ssl/certs/ca-certificates.crt ;; esac

# The apt settings of this machine that the containers need too (dated mirror).
apt_conf_dir() {
  local d=$1
  mkdir -p "$d"
  local f
  for f in /etc/apt/apt.conf.d/*; do
    [ -f "$f" ] && grep -q 'Check-Valid-Until\|Check-Date' "$f" && cp "$f" "$d/"
  done
  return 0
}

# ---- base: debootstrap minbase bookworm, imported ---------------------------------------------
if have "$BASE"; then
  log "$BASE exists"
else
  command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install debootstrap"; exit 1; }
  log "debootstrap bookworm into $WORK/rootfs (minutes)"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  # like the official debian image: updates and security suites, no apt lists or caches
  cat >"$WORK/rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
${DEBIAN_SECURITY_MIRROR:+deb $DEBIAN_SECURITY_MIRROR bookworm-security main}
EOF
  apt_conf_dir "$WORK/rootfs/etc/apt/apt.conf.d"
  printf 'APT::Install-Recommends "false";\n' >"$WORK/rootfs/etc/apt/apt.conf.d/99standin-norecommends"
  rm -rf "$WORK/rootfs/var/lib/apt/lists/"* "$WORK/rootfs/var/cache/apt/archives/"*.deb
  tar -C "$WORK/rootfs" --numeric-owner -c . \
    | $DOCKER import -c 'CMD ["bash"]' -c 'ENV LANG=C.UTF-8' - "$BASE" >/dev/null
  rm -rf "$WORK/rootfs"
  log "built $BASE"
fi

# ---- node:20.20.2-bookworm and -slim -----------------------------------------------------------
node_context() {
  local ctx=$WORK/node-ctx
  [ -f "$ctx/.done" ] && { echo "$ctx"; return; }
  rm -rf "$ctx"; mkdir -p "$ctx/include" "$ctx/npm"
  cp "$NODE_BIN" "$ctx/node"
  if [ -f "$NODE_PREFIX/include/node/node_api.h" ]; then
    cp -r "$NODE_PREFIX/include/node" "$ctx/include/node"
  else
    log "warning: no headers in $NODE_PREFIX/include/node; node-gyp in the image would download them"
    mkdir -p "$ctx/include/node"
  fi
  (cd "$WORK" && npm pack "npm@$NPM_VERSION" --silent >"$WORK/npm-pack.out")
  tar -xzf "$WORK/$(tail -1 "$WORK/npm-pack.out")" -C "$ctx/npm" --strip-components=1
  cp "$NPM_CA" "$ctx/npm-ca.crt"
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
# (the official node image's entrypoint)
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi
exec "$@"
EOF
  chmod +x "$ctx/docker-entrypoint.sh"
  touch "$ctx/.done"
  echo "$ctx"
}

build_node() {
  local tag=$1 extra=$2
  if have "$tag"; then log "$tag exists"; return; fi
  local ctx; ctx=$(node_context)
  local pkgs=''
  [ -n "$extra" ] && pkgs="RUN apt-get update && apt-get install -y --no-install-recommends $extra && rm -rf /var/lib/apt/lists/*"
  cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
LABEL org.spinmesh.standin="test scaffolding, not the registry image"
$pkgs
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
ENV NODE_VERSION=$NODE_VERSION
COPY node /usr/local/bin/node
COPY include/node /usr/local/include/node
COPY npm /usr/local/lib/node_modules/npm
COPY npm-ca.crt /usr/local/share/standin/npm-ca.crt
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && mkdir -p /usr/local/etc \\
 && printf 'cafile=/usr/local/share/standin/npm-ca.crt\nupdate-notifier=false\n' > /usr/local/etc/npmrc \\
 && node --version && npm --version
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["node"]
EOF
  log "building $tag"
  $DOCKER build -q --network host -t "$tag" "$ctx" >/dev/null
  log "built $tag"
}

build_node node:20.20.2-bookworm 'ca-certificates curl wget git xz-utils procps'
build_node node:20.20.2-bookworm-slim ''

# ---- redis:7.2.5-bookworm ------------------------------------------------------------------------
if have redis:7.2.5-bookworm; then
  log "redis:7.2.5-bookworm exists"
else
  ctx=$WORK/redis-ctx; rm -rf "$ctx"; mkdir -p "$ctx"
  cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
# (the official redis image's entrypoint)
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = 'redis-server' -a "$(id -u)" = '0' ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec gosu redis "$0" "$@"
fi
um="$(umask)"
if [ "$um" = '0022' ]; then
  umask 0077
fi
exec "$@"
EOF
  chmod +x "$ctx/docker-entrypoint.sh"
  cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
LABEL org.spinmesh.standin="test scaffolding, not the registry image"
RUN groupadd -r -g 999 redis && useradd -r -g redis -u 999 redis \\
 && apt-get update && apt-get install -y --no-install-recommends redis-server redis-tools gosu \\
 && rm -rf /var/lib/apt/lists/* \\
 && mkdir /data && chown redis:redis /data && redis-server --version
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
EOF
  log "building redis:7.2.5-bookworm"
  $DOCKER build -q --network host -t redis:7.2.5-bookworm "$ctx" >/dev/null
  log "built redis:7.2.5-bookworm"
fi

# ---- prom/prometheus:v2.53.2 ---------------------------------------------------------------------
if have prom/prometheus:v2.53.2; then
  log "prom/prometheus:v2.53.2 exists"
else
  ctx=$WORK/prom-ctx; rm -rf "$ctx"; mkdir -p "$ctx"
  cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
LABEL org.spinmesh.standin="test scaffolding, not the registry image"
RUN apt-get update && apt-get install -y --no-install-recommends prometheus wget \\
 && rm -rf /var/lib/apt/lists/* \\
 && { [ -e /bin/prometheus ] || ln -s /usr/bin/prometheus /bin/prometheus; } \\
 && { [ -e /bin/promtool ] || ln -s /usr/bin/promtool /bin/promtool; } \\
 && mkdir -p /prometheus /etc/prometheus /usr/share/prometheus \\
 && { [ -e /usr/share/prometheus/console_libraries ] || ln -s /etc/prometheus/console_libraries /usr/share/prometheus/console_libraries; } \\
 && { [ -e /usr/share/prometheus/consoles ] || ln -s /etc/prometheus/consoles /usr/share/prometheus/consoles; } \\
 && chown -R nobody:nogroup /etc/prometheus /prometheus \\
 && prometheus --version
USER nobody
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.console.libraries=/usr/share/prometheus/console_libraries", "--web.console.templates=/usr/share/prometheus/consoles"]
EOF
  log "building prom/prometheus:v2.53.2"
  $DOCKER build -q --network host -t prom/prometheus:v2.53.2 "$ctx" >/dev/null
  log "built prom/prometheus:v2.53.2"
fi

$DOCKER image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep -E '^(node:20\.20\.2-bookworm|redis:7\.2\.5|prom/prometheus:v2\.53\.2|localhost/standin-debian)' >&2
