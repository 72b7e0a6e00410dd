#!/usr/bin/env bash
# One-time set-up of a fresh Debian 12 machine for spinmesh: system packages, then `npm ci`
# (which builds the native kernels when OpenBLAS is there, and the TypeScript).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# libopenblas-dev: native kernels; dataset-fashion-mnist: the benchmarks' data;
# python3-numpy: the .npy interoperability test; redis-server, prometheus: the cluster tests;
# openssl: certificates for the Redis TLS test; strace: the hostile-input test lists the files
# the services open; fonts-dejavu-core: the font the plots are drawn with (@spinmesh/plot loads
# it by path).
want=(libopenblas-dev dataset-fashion-mnist python3-numpy redis-server prometheus openssl strace
  fonts-dejavu-core)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "spinmesh setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

npm ci --no-audit --no-fund
