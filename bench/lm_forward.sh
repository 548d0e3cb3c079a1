#!/usr/bin/env bash
# bench/lm_forward.sh — the engine's language-model forward pass against HF transformers (PyTorch),
# on the CPU.
#
#   bench/lm_forward.sh [--quick] [--repeats N] [--arch gpt_neo|gpt2] [--no-profile]
#
#   --quick      1 pair, 1 timed pass each, batch 4: checks the plumbing, not a measurement
#   --repeats N  ours/HF pairs (default 5)
#   --arch gpt2  a GPT-2 model of the same shapes instead of GPT-Neo (HF's GPT-Neo has no SDPA
#                attention, GPT-2 has: this shows the SDPA peer)
#
# 1. builds bench/lm_forward.c against src/core/*.c in $OUT (never in the repository), with the
#    extension's flags and OpenBLAS's OpenMP build;
# 2. makes the model once (bench/lm_forward.py make; cached in $MODEL_CACHE): TinyStories-1L-21M's
#    shape (d_model 1024, 16 heads, d_mlp 4096, 1 layer, vocab 50257, 2048 positions, gelu_new),
#    random weights, model.safetensors + the GPT-2 tokenizer files of test/fixtures;
# 3. checks once, on 2 x 512 tokens, that the engine's blocks.0.hook_mlp_out equals the output of
#    HF's transformer.h[0].mlp (relative error <= 1e-4), so both sides time the same computation;
# 4. alternates, REPEATS times: the driver (1 warm-up + 3 timed passes of 16 x 512 random tokens,
#    capturing blocks.0.hook_mlp_out: embeddings, block 0, no ln_final, no unembedding), then
#    HF's model.transformer(input_ids, use_cache=False) under torch.inference_mode() (embeddings,
#    block 0, ln_f; no lm_head) with eager attention, and with SDPA where HF has it for the arch;
#    torch.set_num_threads(THREADS) and the backend's THREADS threads;
# 5. profiles one more driver run (--profile: a timer around each backend op), and one HF pass
#    under torch.profiler;
# 6. prints each pair and the median ratio ours/HF, the ratio line last.
#
# Each side's number is tokens/s = 16*512 / the median of its 3 timed passes.  HF's peer is the
# faster of eager and SDPA.
#
# The machine may be shared: before each measurement the script waits (up to QUIET_WAIT s) for
# the CPUs to be idle, and each side records how much of the machine other processes (and the
# hypervisor's steal) used during its timed passes ("oth%": /proc/stat's busy time less the
# process's own CPU time); the median leaves out pairs with more than OTHERS_MAX (5%) on either
# side if at least one clean pair exists.
#
# Environment: OUT (results folder; default a new /tmp/sae-bench-lm.*), THREADS (default nproc),
# QUIET_WAIT (300), OTHERS_MAX (5), MODEL_CACHE (default /tmp/sae-bench-lm-model).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root" || exit 1

# ---------------------------------------------------------------- settings
THREADS=${THREADS:-$(nproc)}
REPEATS=5
ARCH=gpt_neo
PROFILE=1
QUICK=0
BATCH=16
SEQ=512
PASSES=3
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --repeats) REPEATS=$2; shift ;;
        --arch) ARCH=$2; shift ;;
        --no-profile) PROFILE=0 ;;
        -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
        *) echo "lm_forward.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" -eq 1 ]; then
    REPEATS=1; BATCH=4; PASSES=1
fi
case $ARCH in gpt_neo|gpt2) ;; *) echo "lm_forward.sh: --arch gpt_neo or gpt2" >&2; exit 2 ;; esac
QUIET_WAIT=${QUIET_WAIT:-300}
OTHERS_MAX=${OTHERS_MAX:-5}
OUT=${OUT:-$(mktemp -d /tmp/sae-bench-lm.XXXXXX)}
mkdir -p "$OUT"
MODEL_CACHE=${MODEL_CACHE:-/tmp/sae-bench-lm-model}

# ---------------------------------------------------------------- helpers
. "$here/machine.sh"     # log, cpu_busy, stat_snap, wait_quiet

# ---------------------------------------------------------------- machine
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') (family $(grep -m1 'cpu family' /proc/cpuinfo | awk '{print $NF}'), model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | awk '{print $NF}'))"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "env OPENBLAS*: $(env | grep OPENBLAS | tr '\n' ' ')"
    echo "env OMP*: $(env | grep -E '^(OMP|GOMP|MKL)_' | tr '\n' ' ')"
    echo "torch: $(python3 -c 'import torch, transformers; print(torch.__version__, "transformers", transformers.__version__)' 2>/dev/null)"
    echo "openblas: $(dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n' 'libopenblas0*' 2>/dev/null | awk '$1 == "ii" {printf "%s %s  ", $2, $3}')"
    echo "engine: commit $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src/core 2>/dev/null || echo ' (src/core modified)')"
} >"$OUT/machine.txt"
log "results in $OUT"

# ---------------------------------------------------------------- 1. the driver
log "building the driver (src/core/*.c + bench/lm_forward.c) in $OUT"
extra_libs=()
[ -e src/core/hub.c ] && extra_libs+=(-lcurl)     # src/core/hub.c (the model hub client) uses libcurl
if ! gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -g -fno-strict-aliasing -fwrapv -fno-omit-frame-pointer \
        -fopenmp -Isrc/core -I/usr/include/x86_64-linux-gnu/openblas-pthread \
        -o "$OUT/lm_forward" src/core/*.c "$here/lm_forward.c" \
        /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 \
        -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp -lm "${extra_libs[@]}" 2>"$OUT/build.log"; then
    cat "$OUT/build.log" >&2
    log "the driver did not build (src/core changed under it?)"
    exit 1
fi

# ---------------------------------------------------------------- 2. the model
MODEL="$MODEL_CACHE/$ARCH"
if [ ! -s "$MODEL/model.safetensors" ] || [ ! -s "$MODEL/config.json" ] || [ ! -s "$MODEL/merges.txt" ]; then
    log "making the random $ARCH model in $MODEL"
    rm -rf "$MODEL"
    mkdir -p "$MODEL_CACHE"
    if ! python3 "$here/lm_forward.py" make "$MODEL" --arch "$ARCH" >"$OUT/make.json" 2>"$OUT/make.err"; then
        cat "$OUT/make.err" >&2
        rm -rf "$MODEL"
        exit 1
    fi
else
    log "using the cached model in $MODEL"
fi

# ---------------------------------------------------------------- 3. same computation?
log "checking blocks.0.hook_mlp_out against HF's transformer.h[0].mlp (2 x $SEQ tokens)"
if ! python3 "$here/lm_forward.py" check "$MODEL" --driver "$OUT/lm_forward" --batch 2 --seq "$SEQ" \
        --threads "$THREADS" >"$OUT/check.json" 2>"$OUT/check.err"; then
    cat "$OUT/check.err" "$OUT/check.json" >&2
    log "the engine's activations differ from HF's: not timing"
    exit 1
fi
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f'  max |diff| / max |HF| = {r[\"max_abs_diff_rel\"]:.2e}, ||diff|| / ||HF|| = {r[\"frobenius_rel\"]:.2e} (tol {r[\"tol\"]:g})')" "$OUT/check.json" >&2

# ---------------------------------------------------------------- 4. the pairs
ATTNS=(eager)
log "does HF's $ARCH have SDPA attention?"
python3 "$here/lm_forward.py" time "$MODEL" --batch 1 --seq 8 --warmup 0 --repeats 1 --threads "$THREADS" \
    --attn sdpa >"$OUT/sdpa_probe.json" 2>"$OUT/sdpa_probe.err"
if python3 -c "import json,sys; sys.exit('error' in json.load(open(sys.argv[1])))" "$OUT/sdpa_probe.json" 2>/dev/null; then
    ATTNS+=(sdpa)
    log "  yes: timing eager and sdpa"
else
    log "  no: $(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('error', 'failed'))" "$OUT/sdpa_probe.json" 2>/dev/null | cut -c1-120)"
fi

: >"$OUT/ours.tsv"
: >"$OUT/hf.tsv"
for rep in $(seq 1 "$REPEATS"); do
    busy=$(wait_quiet)
    log "repeat $rep: ours, 1 + $PASSES passes of $BATCH x $SEQ (machine ${busy}% busy before)"
    "$OUT/lm_forward" "$MODEL" --batch "$BATCH" --seq "$SEQ" --warmup 1 --repeats "$PASSES" \
        --threads "$THREADS" --seed "$rep" >"$OUT/ours_$rep.log" 2>&1 || { cat "$OUT/ours_$rep.log" >&2; exit 1; }
    res=$(grep '^RESULT' "$OUT/ours_$rep.log")
    tps=$(sed -E 's/.*tokens_per_s=([0-9.]+).*/\1/' <<<"$res")
    oth=$(sed -E 's/.*others=([0-9.]+).*/\1/' <<<"$res")
    printf '%s\t%s\t%s\t%s\n' "$rep" "$tps" "$oth" "$busy" >>"$OUT/ours.tsv"
    log "  ours: $tps tokens/s ($(grep -E '^pass' "$OUT/ours_$rep.log" | awk '{printf "%s ", $3}')s); others used $(awk -v o="$oth" 'BEGIN{printf "%.0f", 100*o}')% meanwhile"
    for attn in "${ATTNS[@]}"; do
        busy=$(wait_quiet)
        log "repeat $rep: HF ($attn), 1 + $PASSES passes (machine ${busy}% busy before)"
        python3 "$here/lm_forward.py" time "$MODEL" --batch "$BATCH" --seq "$SEQ" --warmup 1 \
            --repeats "$PASSES" --threads "$THREADS" --attn "$attn" --seed "$rep" \
            >"$OUT/hf_${attn}_$rep.json" 2>"$OUT/hf_${attn}_$rep.err" || { cat "$OUT/hf_${attn}_$rep.err" >&2; exit 1; }
        read -r tps oth < <(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['tokens_per_second'], r['others'])" "$OUT/hf_${attn}_$rep.json")
        printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$attn" "$tps" "$oth" "$busy" >>"$OUT/hf.tsv"
        log "  HF ($attn): $(printf '%.1f' "$tps") tokens/s ($(grep -E '^pass' "$OUT/hf_${attn}_$rep.err" | awk '{printf "%s ", $3}')s); others used $(awk -v o="$oth" 'BEGIN{printf "%.0f", 100*o}')% meanwhile"
    done
done

# ---------------------------------------------------------------- 5. profile
if [ "$PROFILE" -eq 1 ]; then
    busy=$(wait_quiet)
    log "profile: one more driver run with a timer around each backend op (machine ${busy}% busy before)"
    "$OUT/lm_forward" "$MODEL" --batch "$BATCH" --seq "$SEQ" --warmup 1 --repeats "$PASSES" \
        --threads "$THREADS" --profile >"$OUT/profile.txt" 2>&1
    busy=$(wait_quiet)
    log "profile: HF (${ATTNS[-1]}) under torch.profiler (machine ${busy}% busy before)"
    python3 "$here/lm_forward.py" profile "$MODEL" --batch "$BATCH" --seq "$SEQ" --threads "$THREADS" \
        --attn "${ATTNS[-1]}" --rows 16 >"$OUT/hf_profile.txt" 2>"$OUT/hf_profile.err" || cat "$OUT/hf_profile.err" >&2
fi

# ---------------------------------------------------------------- 6. summary
python3 - "$OUT" "$THREADS" "$OTHERS_MAX" "$ARCH" "$BATCH" "$SEQ" <<'PY'
import json, os, statistics as S, sys
out, threads, others_max, arch, B, T = sys.argv[1], sys.argv[2], float(sys.argv[3]) / 100, sys.argv[4], sys.argv[5], sys.argv[6]
rows = lambda f: [l.rstrip("\n").split("\t") for l in open(os.path.join(out, f)) if l.strip()]
ours = {r[0]: (float(r[1]), float(r[2])) for r in rows("ours.tsv")}
hf = {}
for r in rows("hf.tsv"):
    hf.setdefault(r[0], {})[r[1]] = (float(r[2]), float(r[3]))
print()
print(open(os.path.join(out, "machine.txt")).read().rstrip())
print(f"threads: {threads} (sae_backend_cpu_create({threads}); torch.set_num_threads({threads}))")
c = json.load(open(os.path.join(out, "check.json")))
print(f"check: blocks.0.hook_mlp_out vs HF, 2 x {c['seq']} tokens: max |diff|/max|HF| {c['max_abs_diff_rel']:.2e}, "
      f"||diff||/||HF|| {c['frobenius_rel']:.2e}")
probe = json.load(open(os.path.join(out, "sdpa_probe.json")))
if "error" in probe:
    print(f"HF sdpa for {arch}: not available ({probe['error'][:110]}...)")
attns = sorted({a for v in hf.values() for a in v})
print()
print(f"model {arch}, {B} x {T} tokens; tokens/s = {B}*{T} / median of the timed passes; oth% = others' share of the machine")
print(f"{'rep':>3} {'ours':>9} {'oth%':>5} | " + " | ".join(f"{'HF ' + a:>10} {'oth%':>5}" for a in attns) + f" | {'peer':>9} {'ours/peer':>9}")
pairs = []
for rep in sorted(ours, key=int):
    o, oo = ours[rep]
    h = hf.get(rep, {})
    peer_attn = max(h, key=lambda a: h[a][0])
    clean = oo <= others_max and max(v[1] for v in h.values()) <= others_max
    pairs.append((rep, o, oo, h, h[peer_attn][0], clean))
any_clean = any(p[5] for p in pairs)
for rep, o, oo, h, peer, clean in pairs:
    print(f"{rep:>3} {o:9.1f} {100*oo:5.1f} | " + " | ".join(f"{h[a][0]:10.1f} {100*h[a][1]:5.1f}" if a in h else f"{'':>10} {'':>5}" for a in attns)
          + f" | {peer:9.1f} {o/peer:9.3f}" + ("  (contended: left out)" if any_clean and not clean else ""))
pairs = [(p[1], p[4], None, p[5]) for p in pairs]
keep = [p for p in pairs if p[3]] or pairs
note = f"median of {len(keep)} of {len(pairs)} pairs" + ("" if any(p[3] for p in pairs) else ", all contended")
print()
print(f"median ours {S.median(p[0] for p in keep):.1f} tokens/s, HF {S.median(p[1] for p in keep):.1f} tokens/s "
      f"(peer per pair: the faster of {', '.join(attns)})")
for f in ("profile.txt", "hf_profile.txt"):
    prof = os.path.join(out, f)
    if os.path.exists(prof):
        print()
        print(open(prof).read().rstrip())
print()
print(f"ratio ours/HF ({arch}, {B} x {T}, {threads} threads): {S.median(p[0] / p[1] for p in keep):.3f}x ({note})")
PY
