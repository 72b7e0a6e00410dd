#!/usr/bin/env bash
# The GPU checks of the cuda kernels (docs/gpu.md), for a machine with an NVIDIA GPU and CUDA
# (nvcc, cuBLAS) but no Node and no network, in two steps:
#
#   bash scripts/gpu-check.sh prepare   here, after `npm run build`: fills .gpu/ (git-ignored)
#                                       with Node, the N-API headers, the built JavaScript, the
#                                       cuda test, OpenBLAS and Fashion-MNIST (about 58 MB)
#   bash scripts/gpu-check.sh run       there, from the repository root with .gpu/ carried:
#                                       builds the addon with that machine's nvcc, runs the cuda
#                                       kernels against the native ones, then the benchmarks
#                                       kernels-resident, sampling and rbm-fmnist-500 with cuda;
#                                       progress on stderr, ONE JSON line on stdout
#
# `run` should take about two minutes on an H100 (not yet measured). Each step has its own time
# limit (510 s in all, under a 600 s command limit), and a step that fails or runs out of time is
# reported in the JSON line (its error) rather than ending the run.
set -euo pipefail
cd "$(dirname "$0")/.."
G=.gpu

prepare() {
  local node_bin inc data
  node_bin=$(command -v node)
  inc=$(dirname "$(dirname "$node_bin")")/include/node
  [ -f "$inc/node_api.h" ] || inc=/usr/include/node
  data=${SPINMESH_DATA_DIR:-/usr/share/datasets/fashion-mnist}
  [ -d bench/dist ] && [ -d packages/model/dist ] || { echo "run npm run build first" >&2; exit 1; }
  [ -f packages/kernels/native/build/Release/spinmesh_kernels.node ] || echo "note: no native addon here; the check will compare with the portable kernels" >&2
  rm -rf "$G/inc" "$G/app"
  mkdir -p "$G/inc" "$G/app/node_modules/@spinmesh" "$G/app/bench" "$G/app/test"
  if [ ! -f "$G/node.xz" ]; then
    echo "compressing $node_bin (about a minute)" >&2
    xz -T2 -6 -c "$node_bin" > "$G/node.xz"
  fi
  cp "$inc"/{node_api.h,js_native_api.h,js_native_api_types.h,node_api_types.h} "$G/inc/"
  echo '{ "type": "module" }' > "$G/app/package.json"
  for p in kernels model; do
    mkdir -p "$G/app/node_modules/@spinmesh/$p"
    cp packages/$p/package.json "$G/app/node_modules/@spinmesh/$p/"
    cp -r packages/$p/dist "$G/app/node_modules/@spinmesh/$p/"
  done
  cp bench/dist/{run,_common,_resident,kernels,kernels-resident,sampling,rbm-fmnist-500}.js "$G/app/bench/"
  cp scripts/gpu/vitest-shim.mjs scripts/gpu/run-cuda-test.mjs "$G/app/test/"
  node scripts/gpu/transpile-test.mjs "$G/app/test"
  # The native addon for x86-64-v3 (AVX2), which any H100 host runs, with its OpenBLAS.
  if [ -f /usr/include/x86_64-linux-gnu/cblas.h ] || [ -f /usr/include/cblas.h ]; then
    gcc -std=gnu11 -O3 -march=x86-64-v3 -fno-math-errno -fno-trapping-math -shared -fPIC \
      -I"$inc" packages/kernels/native/spinmesh_kernels.c -o "$G/app/spinmesh_kernels.node" \
      -lopenblas -lm
    if [ ! -f "$G/blas.tar.xz" ]; then
      local libs
      libs=$(mktemp -d)
      ldd "$G/app/spinmesh_kernels.node" | awk '/openblas|gfortran|quadmath/ { print $3 }' |
        xargs -I{} cp -L {} "$libs/"
      tar -C "$libs" -cf - . | xz -T2 -6 > "$G/blas.tar.xz"
      rm -rf "$libs"
    fi
  fi
  # Uncompressed IDX files in xz: 4 MB less than the gzip files, which the budget needs.
  if [ ! -f "$G/data.tar.xz" ]; then
    echo "recompressing Fashion-MNIST (about two minutes)" >&2
    local raw f
    raw=$(mktemp -d)
    for f in "$data"/*-ubyte.gz; do gzip -dc "$f" > "$raw/$(basename "$f" .gz)"; done
    tar -C "$raw" -cf - . | xz -T2 -6 > "$G/data.tar.xz"
    rm -rf "$raw"
  fi
  du -sb "$G" | awk '{ printf "%s: %.1f MB (the carried tree may hold 64 MiB)\n", $2, $1 / 1e6 }' >&2
}

T=/tmp/spinmesh-gpu-check
run() {
  rm -rf "$T"
  mkdir -p "$T/lib" "$T/data"
  trap 'rm -rf "$T"' EXIT
  xz -dc "$G/node.xz" > "$T/node" && chmod +x "$T/node"
  [ -f "$G/blas.tar.xz" ] && tar -C "$T/lib" -xJf "$G/blas.tar.xz"
  tar -C "$T/data" -xJf "$G/data.tar.xz"
  export LD_LIBRARY_PATH="$T/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PATH="$T:/usr/local/cuda/bin:$PATH"
  export SPINMESH_NODE_INCLUDE="$PWD/$G/inc" SPINMESH_DATA_DIR="$T/data"
  export SPINMESH_NATIVE_ADDON="$PWD/$G/app/spinmesh_kernels.node"
  export SPINMESH_CUDA_ADDON="${SPINMESH_CUDA_ADDON:-$T/spinmesh_cuda.node}"
  unset SPINMESH_CUDA_TF32
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$T/gpu.txt" 2>&1 || true
  else
    echo "nvidia-smi not found" > "$T/gpu.txt"
  fi
  cat "$T/gpu.txt" >&2
  # step NAME LIMIT_S CMD...: stdout's last line to $T/NAME.json, or the error as JSON.
  step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name" >&2
    if timeout "$limit" "$@" > "$T/$name.out" 2> >(tee "$T/$name.err" >&2); then
      tail -n 1 "$T/$name.out" > "$T/$name.json"
    else
      local rc=$?
      "$T/node" -e 'const [rc, f, g] = process.argv.slice(1); const fs = require("fs");
        const last = (p) => fs.existsSync(p) ? fs.readFileSync(p, "utf8").trim().split("\n").filter((l) => !/^\s+at /.test(l)).slice(-3).join(" | ") : "";
        let out = {}; try { out = JSON.parse(last(f).split(" | ").pop()); } catch {}
        process.stdout.write(JSON.stringify({ ...out, error: `exit ${rc}`, tail: last(g).slice(-600) }));' \
        "$rc" "$T/$name.out" "$T/$name.err" > "$T/$name.json"
    fi
  }
  step build 90 "$T/node" scripts/build-cuda.mjs --out="$T/spinmesh_cuda.node"
  echo "{\"line\": $("$T/node" -e 'process.stdout.write(JSON.stringify(require("fs").readFileSync(process.argv[1], "utf8").trim()))' "$T/build.out")}" > "$T/build.json"
  step tests 90 "$T/node" "$G/app/test/run-cuda-test.mjs"
  export SPINMESH_KERNELS=cuda
  step kernels 60 "$T/node" "$G/app/bench/run.js" kernels-resident
  step sampling 90 "$T/node" "$G/app/bench/run.js" sampling
  step fmnist 180 "$T/node" "$G/app/bench/run.js" rbm-fmnist-500 --epochs=5 --no-ais --no-peer
  "$T/node" - "$T" <<'JS'
const fs = require('node:fs');
const dir = process.argv[2];
const read = (n) => {
  try { return JSON.parse(fs.readFileSync(`${dir}/${n}.json`, 'utf8')); }
  catch (e) { return { error: `no result (${String(e.message).slice(0, 100)})` }; }
};
const [build, tests, kernels, sampling, fmnist] = ['build', 'tests', 'kernels', 'sampling', 'fmnist'].map(read);
const best4096 = Math.max(0, ...Object.entries(sampling.by_chains ?? {})
  .filter(([c]) => Number(c) >= 4096).map(([, v]) => v.spin_updates_per_ns));
process.stdout.write(`${JSON.stringify({
  check: 'spinmesh gpu-check',
  gpu: fs.readFileSync(`${dir}/gpu.txt`, 'utf8').trim(),
  build, tests,
  kernels: { describe: kernels.kernels_detail, sgemm_tflops: kernels.sgemm_tflops, tf32_tflops: kernels.tf32, draw_ns_per_unit: kernels.draw_ns_per_unit, error: kernels.error, tail: kernels.tail },
  sampling: { by_chains: sampling.by_chains, best: sampling.best_spin_updates_per_ns, error: sampling.error, tail: sampling.tail },
  rbm_fmnist_500: { epoch_seconds: fmnist.epoch_seconds, epoch_seconds_all: fmnist.epoch_seconds_all, probe_accuracy: fmnist.probe_accuracy, error: fmnist.error, tail: fmnist.tail },
  goals: {
    tests_pass: Array.isArray(tests.failed) && tests.failed.length === 0 && tests.device_comparisons > 0,
    epoch_at_most_50ms: typeof fmnist.epoch_seconds === 'number' ? fmnist.epoch_seconds <= 0.05 : null,
    probe_at_least_0_87: typeof fmnist.probe_accuracy === 'number' ? fmnist.probe_accuracy >= 0.87 : null,
    sampling_100_per_ns_at_4096_chains_or_more: best4096 >= 100,
  },
})}\n`);
JS
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash scripts/gpu-check.sh prepare|run" >&2; exit 2 ;;
esac
