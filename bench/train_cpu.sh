#!/usr/bin/env bash
# bench/train_cpu.sh — sae_train against a PyTorch peer of SAELens v1.0's training step, on the CPU.
#
#   bench/train_cpu.sh [--quick] [--repeats N] [--no-profile] [--sparse-regime] [--with-addmm] [--no-build]
#
#   --quick          2-4 steps, 1 repeat: checks the plumbing, not a measurement
#   --sparse-regime  also time engine (driver) and torch with b_enc shifted so ~64 features fire
#                    per token: the late phase of a real run, which 20 steps never reach
#   --with-addmm     also time a torch variant with addmm instead of SAELens's einsum (bmm)
#
# 1. builds and installs the extension (make && make install from the repository root);
# 2. starts a throw-away PostgreSQL 15 (pg_virtualenv -t -v 15) and, per shape, makes a table of
#    synthetic activations (sae_synthetic_activations), exports the same rows for PyTorch
#    (binary COPY), then alternates, REPEATS times: sae_train on the table (SET sae.threads = 2),
#    then bench/torch_step.py (torch.set_num_threads(2)) on the same rows and shapes;
# 3. profiles the engine's step outside PostgreSQL (bench/profile_step.c, built in $OUT, linking
#    src/core/*.c; perf record if perf works) to show where the time goes;
# 4. prints the table of medians, the ratio lines last.
#
# Shapes: (a) d_in 1024, d_sae 16384, batch 4096   (b) d_in 768, d_sae 12288, batch 2048.
# Both sides: ReLU unit-norm SAE, MSE mean + 1e-3 L1, decoder renorm + gradient projection,
# Adam(betas=(0, 0.999)), constant lr 3e-4, no warm-up, b_dec = mean of the first half-buffer
# (the geometric median is left out of every timing), no ghost grads.
#
# Ours: sae_train's tokens_per_second (its training loop: every step, the shuffle-buffer refills
# from the table, the train_log rows), "steady" (the same run less its first step, from the
# progress NOTICEs: page faults of the first touch and the first refill excluded), and the
# end-to-end wall time of the statement (reading the table, init, training, storing the SAE).
# Torch: tokens/s over --steps steps after --warmup steps.
#
# The machine may be shared: before each measurement the script waits (up to QUIET_WAIT s) for
# the CPUs to be idle, and it reports how much of the machine other processes (and the
# hypervisor's steal) used during each measurement ("oth%"): a measurement with more than a few
# percent there was slowed down by them, and the medians drop such measurements if at least one
# clean pair of the shape exists (OTHERS_MAX, default 5%).
#
# Environment: OUT (results folder; default a new /tmp/sae-bench.*), THREADS (2), QUIET_WAIT (300).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root" || exit 1
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG

# ---------------------------------------------------------------- settings
THREADS=${THREADS:-2}
REPEATS=3
PROFILE=1
SPARSE=0
ADDMM=0
BUILD=1
QUICK=0
INSIDE=0
while [ $# -gt 0 ]; do
    case $1 in
        --quick) QUICK=1 ;;
        --repeats) REPEATS=$2; shift ;;
        --no-profile) PROFILE=0 ;;
        --sparse-regime) SPARSE=1 ;;
        --with-addmm) ADDMM=1 ;;
        --no-build) BUILD=0 ;;
        --inside) INSIDE=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "train_cpu.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

# name d_in d_sae batch steps warmup(torch)
# A step of (a) is 5 GEMMs of 2*4096*1024*16384 = 137 GFLOP (ours; torch's autograd adds a 6th
# for the input gradient), ~690 GFLOP: 6-8 s at the ~100 GFLOP/s two Zen 3 cores give sgemm.
# (b) is 5 x 38.7 = 193 GFLOP, ~2 s.  6 and 16 steps make each measurement ~40-60 s.
SHAPES=("a 1024 16384 4096 6 1" "b 768 12288 2048 16 2")
ROWS=32768                    # activation rows per table (epochs wrap around)
NBUF=8; STORE_BS=32; CTX=128  # half-buffer = (8/2)*32*128 = 16384 rows: 4 batches of (a), 8 of (b)
HALF=$(( NBUF / 2 * STORE_BS * CTX ))
ACTIVE=16                     # dictionary features per row in the synthetic activations
if [ "$QUICK" -eq 1 ]; then
    SHAPES=("a 1024 16384 4096 2 1" "b 768 12288 2048 4 1")
    REPEATS=1
fi
QUIET_WAIT=${QUIET_WAIT:-300}

if [ "$INSIDE" -eq 0 ]; then
    OUT=${OUT:-$(mktemp -d /tmp/sae-bench.XXXXXX)}
    mkdir -p "$OUT"
fi
export OUT THREADS REPEATS QUIET_WAIT ADDMM

# ---------------------------------------------------------------- helpers
. "$here/machine.sh"     # log, cpu_busy, stat_snap, wait_quiet

# ---------------------------------------------------------------- inside pg_virtualenv
inside() {
    local psql=(psql -X -v ON_ERROR_STOP=1 -q)
    "${psql[@]}" -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
    "${psql[@]}" -c "CREATE EXTENSION sae" || return 1
    "${psql[@]}" -At -c "SELECT version()" >"$OUT/pg_version.txt"

    local shape name d m B steps warm rep
    for shape in "${SHAPES[@]}"; do
        read -r name d m B steps warm <<<"$shape"
        log "shape ($name): d_in $d, d_sae $m, batch $B: making $ROWS rows of synthetic activations"
        local t0=$SECONDS
        "${psql[@]}" -c "CREATE TABLE acts_$name AS SELECT * FROM sae_synthetic_activations($ROWS, $d, $m, $ACTIVE, 0)" \
            -c "VACUUM ANALYZE acts_$name" || return 1
        "${psql[@]}" -c "COPY (SELECT activation FROM acts_$name ORDER BY row_id) TO STDOUT (FORMAT binary)" \
            >"$OUT/acts_$name.pgcopy" || return 1
        log "  table and export took $((SECONDS - t0)) s ($(du -h "$OUT/acts_$name.pgcopy" | cut -f1) exported)"

        local cfg
        cfg=$(printf '{"activations_table": "acts_%s", "activations_column": "activation", "d_in": %d, "expansion_factor": %d, "train_batch_size": %d, "total_training_tokens": %d, "b_dec_init_method": "mean", "lr": 0.0003, "lr_scheduler_name": "constant", "lr_warm_up_steps": 0, "l1_coefficient": 0.001, "adam_beta1": 0, "adam_beta2": 0.999, "n_batches_in_buffer": %d, "store_batch_size": %d, "context_size": %d, "wandb_log_frequency": 10, "seed": 42}' \
            "$name" "$d" $((m / d)) "$B" $((B * steps)) "$NBUF" "$STORE_BS" "$CTX")
        echo "$cfg" >"$OUT/config_$name.json"

        for rep in $(seq 1 "$REPEATS"); do
            local busy ours_log="$OUT/ours_${name}_$rep.log" torch_json="$OUT/torch_${name}_$rep.json"
            busy=$(wait_quiet)
            log "  ($name) repeat $rep: sae_train, $steps steps (machine ${busy}% busy before)"
            local snap0 snap1
            snap0=$(stat_snap)
            "${psql[@]}" >"$ours_log" 2>&1 <<SQL
SET sae.threads = $THREADS;
SET sae.max_memory = '16GB';
SET sae.progress_every = 1;
SELECT split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint
     + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint AS cpu0 \gset
\timing on
\pset format unaligned
\pset fieldsep '|'
\pset tuples_only on
SELECT 'RESULT', run_id, n_steps, n_tokens, l0, explained_variance, tokens_per_second, seconds
FROM sae_train('$cfg');
\timing off
SELECT 'CPUTICKS', split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint
     + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint - :cpu0;
SQL
            snap1=$(stat_snap)
            if ! grep -q '^RESULT' "$ours_log"; then
                log "  sae_train failed; its output:"
                cat "$ours_log" >&2
                return 1
            fi
            python3 - "$ours_log" "$name" "$rep" "$B" "$THREADS" "$busy" "$(getconf CLK_TCK)" $snap0 $snap1 >>"$OUT/ours.tsv" <<'PY'
import re, sys
path, name, rep, B, threads, busy, hz = sys.argv[1:8]
b0, t0, b1, t1 = map(int, sys.argv[8:12])
B, threads, hz = int(B), int(threads), int(hz)
txt = open(path).read()
res = next(l for l in txt.splitlines() if l.startswith("RESULT|")).split("|")
_, run_id, n_steps, n_tokens, l0, ev, tps, secs = res
e2e = float(re.search(r"^Time: ([0-9.]+) ms", txt, re.M).group(1)) / 1000
ticks = int(next(l for l in txt.splitlines() if l.startswith("CPUTICKS|")).split("|")[1])
# progress NOTICEs: "step k/N | T tokens/s | ...", T = k*B / elapsed since the loop began
el = {int(k): int(k) * B / float(t) for k, t in re.findall(r"step (\d+)/\d+ \| (\d+) tokens/s", txt) if float(t) > 0}
ks = sorted(el)
steady = (ks[-1] - ks[0]) * B / (el[ks[-1]] - el[ks[0]]) if len(ks) >= 2 and el[ks[-1]] > el[ks[0]] else float("nan")
first = el[ks[0]] if ks else float("nan")
# CPU the rest of the machine used meanwhile, as a fraction of all its CPUs
others = max(0.0, (b1 - b0) - ticks) / max(1, t1 - t0)
print("\t".join(str(v) for v in [name, rep, n_steps, float(tps), steady, float(secs), e2e,
                                 ticks / hz / e2e / threads, float(l0), float(ev), first, busy, others]))
PY
            tail -1 "$OUT/ours.tsv" | awk -F'\t' '{printf "      ours: %.0f tokens/s (steady %.0f), loop %.1f s, e2e %.1f s, L0 %.0f; others used %.0f%% of the CPUs meanwhile\n", $4, $5, $6, $7, $9, 100 * $13}' >&2

            busy=$(wait_quiet)
            log "  ($name) repeat $rep: torch, $warm + $steps steps (machine ${busy}% busy before)"
            snap0=$(stat_snap)
            if ! python3 "$here/torch_step.py" --d-in "$d" --d-sae "$m" --batch "$B" --steps "$steps" \
                    --warmup "$warm" --threads "$THREADS" --data "$OUT/acts_$name.pgcopy" \
                    --half-buffer "$HALF" >"$torch_json" 2>"$OUT/torch_${name}_$rep.err"; then
                log "  torch_step.py failed:"
                cat "$OUT/torch_${name}_$rep.err" >&2
                return 1
            fi
            snap1=$(stat_snap)
            python3 - "$torch_json" "$name" "$rep" "$busy" "$(getconf CLK_TCK)" $snap0 $snap1 >>"$OUT/torch.tsv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
hz = int(sys.argv[5])
b0, t0, b1, t1 = map(int, sys.argv[6:10])
others = max(0.0, (b1 - b0) - r["process_cpu_seconds"] * hz) / max(1, t1 - t0)
print("\t".join(str(v) for v in [sys.argv[2], sys.argv[3], r["steps"], r["tokens_per_second"],
                                 r["seconds"], r["warmup_seconds"], r["cpu_cores"] / r["threads"],
                                 r["last_l0"], sys.argv[4], others]))
PY
            tail -1 "$OUT/torch.tsv" | awk -F'\t' '{printf "      torch: %.0f tokens/s, %.1f s timed (+%.1f s warm-up), L0 %.0f; others used %.0f%% of the CPUs meanwhile\n", $4, $5, $6, $8, 100 * $10}' >&2
            if [ "$ADDMM" -eq 1 ]; then
                busy=$(wait_quiet)
                log "  ($name) repeat $rep: torch variant with addmm (machine ${busy}% busy before)"
                snap0=$(stat_snap)
                python3 "$here/torch_step.py" --d-in "$d" --d-sae "$m" --batch "$B" --steps "$steps" \
                    --warmup "$warm" --threads "$THREADS" --data "$OUT/acts_$name.pgcopy" \
                    --half-buffer "$HALF" --matmul >"$OUT/torch_addmm_${name}_$rep.json" || return 1
                snap1=$(stat_snap)
                python3 - "$OUT/torch_addmm_${name}_$rep.json" "$name" "$rep" "$(getconf CLK_TCK)" $snap0 $snap1 >>"$OUT/torch_addmm.tsv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
hz = int(sys.argv[4])
b0, t0, b1, t1 = map(int, sys.argv[5:9])
others = max(0.0, (b1 - b0) - r["process_cpu_seconds"] * hz) / max(1, t1 - t0)
print("\t".join(str(v) for v in [sys.argv[2], sys.argv[3], r["tokens_per_second"], others]))
PY
                tail -1 "$OUT/torch_addmm.tsv" | awk -F'\t' '{printf "      torch (addmm): %.0f tokens/s; others used %.0f%% of the CPUs meanwhile\n", $3, 100 * $4}' >&2
            fi
        done
        "${psql[@]}" -c "DROP TABLE acts_$name" -c "TRUNCATE sae.runs CASCADE" >/dev/null
    done
}

if [ "$INSIDE" -eq 1 ]; then
    inside
    exit $?
fi

# ---------------------------------------------------------------- build, then the server part
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') (family $(grep -m1 'cpu family' /proc/cpuinfo | awk '{print $NF}'), model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | awk '{print $NF}'))"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "env OPENBLAS*: $(env | grep OPENBLAS | tr '\n' ' ')"
    echo "env OMP*: $(env | grep -E '^(OMP|GOMP)_' | tr '\n' ' ')"
    echo "torch: $(python3 -c 'import torch; print(torch.__version__)' 2>/dev/null)"
    echo "openblas: $(dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n' 'libopenblas0*' 2>/dev/null | awk '$1 == "ii" {printf "%s %s  ", $2, $3}')"
} >"$OUT/machine.txt"

if [ "$BUILD" -eq 1 ]; then
    log "building and installing the extension"
    if ! { make -s PG_CONFIG="$PG_CONFIG" && make -s PG_CONFIG="$PG_CONFIG" install; } >"$OUT/build.log" 2>&1; then
        cat "$OUT/build.log" >&2
        log "the extension did not build or install"
        exit 1
    fi
fi

: >"$OUT/ours.tsv"
: >"$OUT/torch.tsv"
: >"$OUT/torch_addmm.tsv"
log "results in $OUT"
# declare -p carries the arrays into the pg_virtualenv child
pg_virtualenv -t -v 15 -- bash -c "$(declare -p SHAPES ROWS NBUF STORE_BS CTX HALF ACTIVE); $(declare -f log cpu_busy stat_snap wait_quiet inside); here='$here'; inside" \
    2>&1 | tee "$OUT/server.log" >&2
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    log "the PostgreSQL part failed (log: $OUT/server.log)"
    exit 1
fi

# ---------------------------------------------------------------- profile of the engine's step
profile_shape() {
    local name=$1 d=$2 m=$3 B=$4 steps=$5 extra=${6:-} tag=${7:-dense}
    local perfopt=()
    [ "$HAVE_PERF" -eq 1 ] && perfopt=(--perf "$OUT/perf_${name}_$tag.data")
    wait_quiet >/dev/null
    log "profile ($name, $tag): $steps steps after 1 warm-up"
    "$OUT/profile_step" "$d" "$m" "$B" "$steps" --warmup 1 --threads "$THREADS" --active "$ACTIVE" \
        "${perfopt[@]}" $extra >"$OUT/profile_${name}_$tag.txt" 2>&1 || {
        cat "$OUT/profile_${name}_$tag.txt" >&2
        return 1
    }
    if [ "$HAVE_PERF" -eq 1 ] && [ -s "$OUT/perf_${name}_$tag.data" ]; then
        perf report -i "$OUT/perf_${name}_$tag.data" --stdio --sort dso,symbol --percent-limit 0.3 \
            2>/dev/null | grep -v '^#' | grep -v '^$' >"$OUT/perf_${name}_$tag.txt"
        python3 - "$OUT/perf_${name}_$tag.txt" >>"$OUT/profile_${name}_$tag.txt" <<'PY'
import re, sys
groups = {}
order = ["sgemm (OpenBLAS kernels + packing)", "OpenBLAS threads idle/spin", "OpenMP idle/spin/barrier",
         "engine passes (cpu_*)", "kernel (page faults, zeroing, scheduling)", "other"]
rows = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if not m:
        continue
    pct, dso, kind = float(m.group(1)), m.group(2), m.group(3)
    sym = re.sub(r"(\s+-)+\s*$", "", m.group(4)).strip()
    rows.append((pct, dso, sym))
    if kind == "k" or "kernel" in dso:
        g = order[4]
    elif "openblas" in dso and re.search(r"sgemm|kernel|copy|beta|_[nt][nt]$|gemm", sym):
        g = order[0]
    elif "openblas" in dso:
        g = order[1]
    elif "gomp" in dso:
        g = order[2]
    elif sym.startswith("cpu_") or "_omp_fn" in sym:
        g = order[3]
    else:
        g = order[5]
    groups[g] = groups.get(g, 0) + pct
print("perf groups (% of samples in the timed steps):")
for g in order:
    if g in groups:
        print(f"  {groups[g]:5.1f}%  {g}")
print("perf top symbols:")
for pct, dso, sym in sorted(rows, reverse=True)[:14]:
    print(f"  {pct:5.1f}%  {dso:22s} {sym}")
PY
    fi
    grep -E '^(gemm [0-9]|SUMMARY|perf|  )' "$OUT/profile_${name}_$tag.txt" >&2
}

if [ "$PROFILE" -eq 1 ] || [ "$SPARSE" -eq 1 ]; then
    log "building the profile driver (src/core/*.c + bench/profile_step.c) in $OUT"
    sparse_def=$(grep -q 'sparse_path' src/core/trainer.h && echo -DHAVE_SPARSE_PATH)
    # the same engine flags and OpenBLAS build as the extension (see the Makefile)
    if gcc -std=c11 -D_POSIX_C_SOURCE=200809L -O3 -g -fno-strict-aliasing -fwrapv -fno-omit-frame-pointer \
            -fopenmp -Isrc/core -I/usr/include/x86_64-linux-gnu/openblas-pthread $sparse_def \
            -o "$OUT/profile_step" src/core/*.c "$here/profile_step.c" \
            /usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0 \
            -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp -lm 2>"$OUT/profile_build.log"; then
        HAVE_PERF=0
        perf record -q -o "$OUT/perf_probe.data" -- true >/dev/null 2>&1 && HAVE_PERF=1
        rm -f "$OUT/perf_probe.data"
        if [ "$PROFILE" -eq 1 ]; then
            for shape in "${SHAPES[@]}"; do
                read -r name d m B steps warm <<<"$shape"
                profile_shape "$name" "$d" "$m" "$B" $(( steps > 3 ? 3 : steps ))
            done
        fi
        if [ "$SPARSE" -eq 1 ]; then
            # the late phase of a run: ~64 features per token; engine and torch from the same start
            for shape in "${SHAPES[@]}"; do
                read -r name d m B steps warm <<<"$shape"
                profile_shape "$name" "$d" "$m" "$B" "$steps" "--sparse-l0 64" sparse64
                wait_quiet >/dev/null
                log "torch ($name) with b_enc shifted to L0 ~64"
                python3 "$here/torch_step.py" --d-in "$d" --d-sae "$m" --batch "$B" --steps "$steps" \
                    --warmup "$warm" --threads "$THREADS" --data "$OUT/acts_$name.pgcopy" \
                    --half-buffer "$HALF" --sparse-l0 64 >"$OUT/torch_${name}_sparse64.json"
                python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f'torch sparse64 ({sys.argv[2]}): {r[\"tokens_per_second\"]:.0f} tokens/s, L0 {r[\"last_l0\"]:.0f}')" \
                    "$OUT/torch_${name}_sparse64.json" "$name" >&2
            done
        fi
    else
        cat "$OUT/profile_build.log" >&2
        log "the profile driver did not build (src/core changed under it?): skipping the profile"
    fi
fi

# ---------------------------------------------------------------- summary
python3 - "$OUT" "$THREADS" <<'PY'
import statistics as S, sys, os
out, threads = sys.argv[1], sys.argv[2]
def rows(f):
    p = os.path.join(out, f)
    return [l.rstrip("\n").split("\t") for l in open(p) if l.strip()] if os.path.exists(p) else []
ours, torch = rows("ours.tsv"), rows("torch.tsv")
shapes = {"a": "d_in 1024, d_sae 16384, batch 4096", "b": "d_in 768, d_sae 12288, batch 2048"}
print()
print(open(os.path.join(out, "machine.txt")).read().rstrip())
print(f"threads: {threads} (SET sae.threads = {threads}; torch.set_num_threads({threads}))")
print()
others_max = float(os.environ.get("OTHERS_MAX", "5")) / 100
print("per repeat: tokens/s; oth% = share of the machine other processes used during the measurement")
print(f"{'shape':6} {'rep':>3} {'ours':>8} {'steady':>8} {'loop s':>7} {'e2e s':>7} {'L0':>6} {'oth%':>5} | {'torch':>8} {'timed s':>7} {'L0':>6} {'oth%':>5} | {'ratio':>6} {'steady':>6}")
ratio, ratio_st, med, used = {}, {}, {}, {}
for name in shapes:
    O = [r for r in ours if r[0] == name]
    T = [r for r in torch if r[0] == name]
    pairs = list(zip(O, T))
    clean = [(o, t) for o, t in pairs if float(o[12]) <= others_max and float(t[9]) <= others_max]
    keep = clean if clean else pairs
    for o, t in pairs:
        r1 = float(o[3]) / float(t[3]); r2 = float(o[4]) / float(t[3])
        mark = "" if (o, t) in keep else "  (contended: left out)"
        print(f"({name})    {o[1]:>3} {float(o[3]):8.1f} {float(o[4]):8.1f} {float(o[5]):7.1f} {float(o[6]):7.1f} {float(o[8]):6.0f} {100*float(o[12]):5.1f} | "
              f"{float(t[3]):8.1f} {float(t[4]):7.1f} {float(t[7]):6.0f} {100*float(t[9]):5.1f} | {r1:6.3f} {r2:6.3f}{mark}")
    if keep:
        ratio[name] = [float(o[3]) / float(t[3]) for o, t in keep]
        ratio_st[name] = [float(o[4]) / float(t[3]) for o, t in keep]
        used[name] = (len(keep), len(pairs), bool(clean))
        med[name] = (S.median(float(o[3]) for o, t in keep), S.median(float(o[4]) for o, t in keep),
                     S.median(float(o[6]) for o, t in keep), S.median(float(t[3]) for o, t in keep))
print()
print("medians")
print(f"{'shape':40} {'ours tok/s':>10} {'steady':>8} {'e2e s':>7} {'torch tok/s':>11} {'ratio':>6}")
for name, (o, st, e2e, t) in med.items():
    print(f"({name}) {shapes[name]:36} {o:10.1f} {st:8.1f} {e2e:7.1f} {t:11.1f} {S.median(ratio[name]):6.3f}")
A = rows("torch_addmm.tsv")
if A:
    print()
    print("torch variant with addmm instead of SAELens's einsum (not SAELens's code; clean runs only, if any):")
    for name in med:
        R = [r for r in A if r[0] == name]
        C = [r for r in R if float(r[3]) <= others_max] or R
        if C:
            t = S.median(float(r[2]) for r in C)
            print(f"({name}) torch-addmm {t:.1f} tokens/s (median of {len(C)}): ours/torch-addmm = {med[name][0] / t:.3f}x")
import json, re
sp = []
for name in shapes:
    p, j = os.path.join(out, f"profile_{name}_sparse64.txt"), os.path.join(out, f"torch_{name}_sparse64.json")
    if os.path.exists(p) and os.path.exists(j):
        m = re.search(r"tokens_per_s=([0-9.]+).*mean_l0=([0-9.]+) sparse_steps=(\d+)", open(p).read())
        t = json.load(open(j))
        if m:
            sp.append(f"({name}) engine step {float(m.group(1)):.1f} tokens/s (L0 {float(m.group(2)):.0f}, sparse path {m.group(3)} steps), "
                      f"torch {t['tokens_per_second']:.1f} tokens/s (L0 {t['last_l0']:.0f}): {float(m.group(1)) / t['tokens_per_second']:.3f}x")
if sp:
    print()
    print("sparse regime (b_enc shifted so ~64 features fire; engine driver, not sae_train; one run each):")
    print("\n".join(sp))
print()
for name in med:
    k, n, clean = used[name]
    note = f"median of {k} of {n} pairs" + ("" if clean else ", all contended")
    print(f"ratio ({name}) {shapes[name]}: ours/torch = {S.median(ratio[name]):.3f}x ({note}; steady-state {S.median(ratio_st[name]):.3f}x)")
PY
