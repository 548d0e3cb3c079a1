#!/usr/bin/env bash
# bench/gpu_check.sh — everything that needs a GPU, as one command (a few minutes on an H100):
#
#   1. builds the CUDA backend (kernels/ -> sae_cuda.so, for this GPU's architecture), the
#      engine's test runner with the CUDA tests, and the benchmark; no PostgreSQL is needed;
#   2. runs the CPU-vs-GPU parity tests (test/unit/test_cuda.c: every backend op, training runs in
#      FP32 and TF32, the model's logits and hooks);
#   3. runs the benchmark (bench/gpu_bench.c) on a random-weight model shaped like
#      tiny-stories-1L-21M (bench/lm_forward.py make), and PyTorch's SAELens-v1 training step on
#      the same GPU (bench/torch_step.py --device cuda), in FP32 and TF32;
#   4. prints a short table last.
#
#   bench/gpu_check.sh [--steps N]          timed training steps per benchmark mode (default 128)
#   bench/gpu_check.sh --fetch-debs DIR     on a Debian 12 machine with its archive: download the
#                                           OpenBLAS packages for a GPU machine without apt
#
# Needs nvcc (PATH or /usr/local/cuda), gcc, OpenBLAS (Debian's libopenblas0-openmp and
# libopenblas-pthread-dev, or DEBS=DIR holding those .deb files, unpacked under $OUT), and for
# step 3 python3 with torch and transformers (without them the model cannot be made and step 3
# is skipped, with a message).  Results go to OUT (default a new /tmp/sae-gpu-check.*).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root" || exit 1
debs=(libopenblas0-openmp libopenblas-pthread-dev libopenblas0 libopenblas-dev)

if [ "${1:-}" = --fetch-debs ]; then
    mkdir -p "$2" && cd "$2" && exec apt-get download "${debs[@]}"
fi
steps=128
[ "${1:-}" = --steps ] && steps=$2

OUT=${OUT:-$(mktemp -d -t sae-gpu-check.XXXXXX)}
mkdir -p "$OUT"
log() { echo "gpu_check: $*" >&2; }
start=$(date +%s)
status=0

# ------------------------------------------------------------------ 1. build
nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null) || { log "no nvcc"; exit 1; }
blas_inc=/usr/include/x86_64-linux-gnu/openblas-pthread
blas_dir=/usr/lib/x86_64-linux-gnu/openblas-openmp
if [ ! -e "$blas_dir/libopenblas.so.0" ] && [ -n "${DEBS:-}" ]; then
    for f in "$DEBS"/*.deb; do dpkg -x "$f" "$OUT/sysroot"; done
    blas_inc=$OUT/sysroot$blas_inc
    blas_dir=$OUT/sysroot$blas_dir
fi
[ -e "$blas_dir/libopenblas.so.0" ] || { log "OpenBLAS is missing: install libopenblas0-openmp libopenblas-pthread-dev, or set DEBS (see --fetch-debs)"; exit 1; }

cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)
arch=${cap:+-gencode arch=compute_$cap,code=sm_$cap}
log "building sae_cuda.so (${arch:-default architectures}) and the drivers in $OUT"
make -s -C kernels clean
if ! make -s -j"$(nproc)" -C kernels NVCC="$nvcc" ${arch:+CUDA_ARCH="$arch"} >"$OUT/build.log" 2>&1; then
    cat "$OUT/build.log" >&2
    exit 1
fi
core=$(ls src/core/*.c | grep -v '/hub\.c$')     # hub.c (downloads, libcurl) is not needed here
cflags=(-std=c11 -D_POSIX_C_SOURCE=200809L -O3 -g -fopenmp -Wall -Isrc/core -I"$blas_inc")
libs=("$blas_dir/libopenblas.so.0" -Wl,-rpath,"$blas_dir" -lm)
# shellcheck disable=SC2086
gcc "${cflags[@]}" -o "$OUT/cuda_tests" $core test/unit/run_tests.c test/unit/helpers.c test/unit/test_cuda.c \
    "${libs[@]}" 2>>"$OUT/build.log" &&
gcc "${cflags[@]}" -o "$OUT/gpu_bench" $core bench/gpu_bench.c "${libs[@]}" 2>>"$OUT/build.log" ||
    { cat "$OUT/build.log" >&2; exit 1; }
export SAE_CUDA_MODULE=$root/kernels/sae_cuda.so

# ------------------------------------------------------------------ 2. parity tests
log "CPU vs GPU parity tests"
(cd test/unit && "$OUT/cuda_tests") 2>&1 | tee "$OUT/tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if grep -q '# SKIP' "$OUT/tests.log"; then
    log "the tests were skipped (above: why): no benchmark without a GPU"
    exit 1
fi

# ------------------------------------------------------------------ 3. benchmark
if python3 -c 'import torch, transformers' 2>/dev/null; then
    log "making the model (random weights, tiny-stories-1L-21M's shapes)"
    python3 bench/lm_forward.py make "$OUT/model" >"$OUT/model.log" 2>&1 || { cat "$OUT/model.log" >&2; exit 1; }
    log "ours: gpu_bench, $steps timed steps per mode"
    "$OUT/gpu_bench" "$OUT/model" --steps "$steps" 2>&1 | tee "$OUT/bench.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    for tf32 in "" --tf32; do
        log "PyTorch: SAELens v1's step (bench/torch_step.py --device cuda $tf32)"
        python3 bench/torch_step.py --device cuda $tf32 --d-in 1024 --d-sae 16384 --batch 4096 \
            --rows 65536 --half-buffer 32768 --steps 50 --warmup 5 --lr 0.0008 \
            >"$OUT/torch${tf32:+-tf32}.json" 2>>"$OUT/torch.log" || status=1
    done
else
    log "python3 with torch and transformers is missing: no model, no benchmark"
    status=1
fi

# ------------------------------------------------------------------ 4. the table
echo
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1), $(date -u +%F)"
echo "parity tests: $(grep -c '^ok' "$OUT/tests.log") ok, $(grep -c '^not ok' "$OUT/tests.log") not ok"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = {}
if os.path.exists(f"{out}/bench.log"):
    for line in open(f"{out}/bench.log"):
        f = line.split()
        if f[:1] == ["RESULT"] and f[1] != "mode":
            rows[f[1]] = float(f[2])
for tf32 in ("", "-tf32"):
    path = f"{out}/torch{tf32}.json"
    if os.path.exists(path) and os.path.getsize(path) > 0:
        rows["torch-sae" + (tf32 or "-fp32")] = json.load(open(path))["tokens_per_second"]
flops = {"lm": 27.26e6, "sae": 10 * 1024 * 16384}   # per token: the model to layer 0, the SAE step
print(f"{'':18} {'tokens/s':>10} {'s per 50M':>10} {'of FP32':>8} {'of TF32':>8}")
for mode, tps in rows.items():
    f = flops["lm"] * (mode == "lm" or mode.startswith("e2e")) + flops["sae"] * (mode != "lm")
    print(f"{mode:18} {tps:10.0f} {50e6 / tps:10.1f} {100 * tps * f / 60e12:7.1f}% {100 * tps * f / 400e12:7.1f}%")
for p in ("fp32", "tf32"):
    if f"sae-{p}" in rows and f"torch-sae-{p}" in rows:
        print(f"SAE step, ours / PyTorch ({p}): {rows[f'sae-{p}'] / rows[f'torch-sae-{p}']:.2f}x")
PY
echo "(target: 50M tokens of e2e in under 180 s on an H100; results in $OUT; $(( $(date +%s) - start )) s)"
exit "$status"
