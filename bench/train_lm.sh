#!/usr/bin/env bash
# bench/train_lm.sh — end to end on the CPU: sae_train on a language model (LM forward + SAE
# training) against SAELens 6 with the same config on the same machine, in one run.
#
#   bench/train_lm.sh [--quick] [--repeats N] [--steps N] [--context T] [--no-build]
#
#   --quick      4 steps, 1 repeat: checks the plumbing, not a measurement
#   --repeats N  ours/SAELens pairs, alternating (default 3)
#   --steps N    SAE steps of 4096 tokens per run (default 20)
#   --context T  context size (default 128; 512 is TinyStories's and the issue's)
#   --no-build   skip make && make install
#
# The model: a random-weight GPT-Neo shaped like TinyStories-1L-21M (d_model 1024, 16 heads, one
# global-attention layer, d_mlp 4096, vocab 50257, 2048 positions, gelu_new), made once by
# bench/lm_forward.py make (safetensors + the GPT-2 tokenizer files), cached in $MODEL_CACHE.
# The data: (16384 + steps x 4096 + 16384) / T contexts of T tokens (at least 1024 for T <= 128;
# BOS, then uniform random ids; seed 0), made for each run by
# bench/train_lm_saelens.py tokens: the same rows go to a table (-> sae_create_dataset) and to a
# datasets.Dataset (-> SAELens's override_dataset), so both sides read the same contexts in the
# same order.  No context is read twice in a run.
#
# Both sides: hook blocks.0.hook_mlp_out, d_in 1024, expansion 16 (d_sae 16384), 4096 tokens per
# SAE step, LM batches of 4096/T contexts (4096 tokens), lr 8e-4 constant without warm-up, L1
# coefficient 1e-3, Adam betas (0, 0.999), b_dec zeros, float32, no evals, no W&B, no
# checkpoints, THREADS threads (SET sae.threads / torch.set_num_threads).  The buffer holds 32768
# tokens on both sides: ours n_batches_in_buffer 8 x store_batch_size 4096/T x T (SAELens v1.0's
# buffer: halves of 16384 tokens); SAELens 6 sizes its buffer as n_batches_in_buffer x
# context_size tokens, so it gets n_batches_in_buffer 32768/T, and mixes half of it
# (activations_mixing_fraction 0.5) - both serve 4 batches per 16384 new tokens.
# Each side trains its own SAE recipe: ours SAELens v1.0's (unit-norm decoder, gradient
# projection), SAELens 6's "standard" (L1 weighted by decoder norms, grad-norm clipping).
#
# What is timed (see bench/RESULTS.md for the discussion):
#   ours:    sae_train's tokens_per_second: its training loop (every refill's LM forward, the
#            shuffles, every SAE step, the train_log rows).  The first half-buffer (16384
#            tokens, 4 LM batches) is forwarded before that timer starts (it is the b_dec
#            sample, even with b_dec zeros); its time is taken from the NOTICEs' arrival times
#            (client clock) and added in "ours equal work".
#   SAELens: SAETrainer.fit (its whole loop, including the first fill of its buffer: the same
#            LM work as ours + the first half-buffer).  tokens/s = tokens trained / fit seconds.
#   The headline ratio is equal work: ours n/(loop + first half-buffer) over SAELens n/fit.
# Breakdown: ours from sae.progress_every = 1 (the cumulative tokens/s of each step's NOTICE
# gives each step's time; the steps that refill minus the median step without a refill = the
# refill: LM forward of 16384 tokens + shuffle); SAELens from timers around its own
# ActivationsStore.get_activations (LM forward) and SAETrainer._train_step (SAE step).
#
# The machine may be shared: before each measurement the script waits (up to QUIET_WAIT s) for
# the CPUs to be idle, and records how much of the machine other processes (and hypervisor
# steal) used during it (oth%); medians leave out pairs above OTHERS_MAX (5) % when at least one
# clean pair exists.
#
# Environment: OUT (results; default a new /tmp/sae-bench-train-lm.*), THREADS (2), QUIET_WAIT
# (300), OTHERS_MAX (5), MODEL_CACHE (/tmp/sae-bench-train-lm-model; must be readable by the
# server's user: the script makes it world-readable).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root" || exit 1
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG

# ---------------------------------------------------------------- settings
THREADS=${THREADS:-2}
REPEATS=3
STEPS=20
CTX=128
BUILD=1
INSIDE=0
while [ $# -gt 0 ]; do
    case $1 in
        --quick) STEPS=4; REPEATS=1 ;;
        --repeats) REPEATS=$2; shift ;;
        --steps) STEPS=$2; shift ;;
        --context) CTX=$2; shift ;;
        --no-build) BUILD=0 ;;
        --inside) INSIDE=1 ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/!p}' "$0"; exit 0 ;;
        *) echo "train_lm.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
B=4096
EXP=16
D_IN=1024
if [ $((B % CTX)) -ne 0 ]; then echo "train_lm.sh: --context must divide $B" >&2; exit 2; fi
STORE_BS=$((B / CTX))              # contexts per LM batch: 4096 tokens
NBUF=8                             # ours: half-buffer = 4 LM batches = 16384 tokens
HALF=$((NBUF / 2 * STORE_BS * CTX))
SL_NBUF=$((2 * HALF / CTX))        # SAELens 6: buffer = n_batches_in_buffer * context_size tokens
PRE_CALLS=$((HALF / (STORE_BS * CTX)))
TOTAL=$((STEPS * B))
N_CTX=$(( (HALF + TOTAL + HALF) / CTX ))   # both sides forward HALF + TOTAL (rounded up to halves)
[ "$N_CTX" -lt 1024 ] && [ "$CTX" -le 128 ] && N_CTX=1024
QUIET_WAIT=${QUIET_WAIT:-300}
OTHERS_MAX=${OTHERS_MAX:-5}
MODEL_CACHE=${MODEL_CACHE:-/tmp/sae-bench-train-lm-model}
if [ "$INSIDE" -eq 0 ]; then
    OUT=${OUT:-$(mktemp -d /tmp/sae-bench-train-lm.XXXXXX)}
    mkdir -p "$OUT"
    chmod a+rx "$OUT"
fi
export OUT THREADS REPEATS QUIET_WAIT OTHERS_MAX MODEL_CACHE

# ---------------------------------------------------------------- helpers
. "$here/machine.sh"     # log, cpu_busy, stat_snap, wait_quiet

# stamp each line with the wall clock (for the NOTICEs' arrival times)
stamp() {
    while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done
}

# one line about the last measurement of a side, on stderr
show_last() {
    tail -1 "$2" | python3 -c '
import json, sys
side = sys.argv[1]
r = json.loads(sys.stdin.read())
if side == "ours":
    print("      ours: %.1f tokens/s (loop %.1f s); equal work %.1f (+%.1f s first half-buffer); step %.2f s, refills %.1f s; L0 %.0f; others %.0f%%"
          % (r["tokens_per_second"], r["seconds"], r["equal_work_tokens_per_second"], r["prefill_seconds"],
             r["step_median_no_refill_s"], sum(r["refill_extra_seconds"]), r["l0"], 100 * r["others"]))
else:
    print("      SAELens: %.1f tokens/s (fit %.1f s: LM %.1f s in %d calls, SAE steps %.1f s, other %.1f s); L0 %.0f; TL vs HF %.1e; others %.0f%%"
          % (r["tokens_per_second"], r["seconds"], r["lm_seconds"], r["lm_calls"], r["sae_step_seconds"],
             r["other_seconds"], r["last_l0"], r["check"]["frobenius_rel"], 100 * r["others"]))
' "$1" >&2
}

# ---------------------------------------------------------------- inside pg_virtualenv
inside() {
    local psql=(psql -X -v ON_ERROR_STOP=1 -q)
    "${psql[@]}" -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
    "${psql[@]}" >"$OUT/setup_sql.log" 2>&1 <<SQL || { cat "$OUT/setup_sql.log" >&2; return 1; }
CREATE EXTENSION sae;
SELECT version();
SELECT sae_load_model('ts1l', '$MODEL_CACHE');
CREATE TABLE ctx (id serial PRIMARY KEY, tokens int[]);
\copy ctx(tokens) FROM '$OUT/tokens.copy'
SELECT sae_create_dataset('rand', 'ts1l', 'SELECT tokens FROM ctx ORDER BY id', $CTX);
SELECT name, n_contexts, n_tokens FROM sae.datasets;
SELECT (SELECT tokens FROM sae.dataset_tokens t JOIN sae.datasets d USING (dataset_id)
        WHERE d.name = 'rand' AND context_id = 0) = (SELECT tokens FROM ctx ORDER BY id LIMIT 1) AS same_first_context;
SQL
    grep -q ' t$' "$OUT/setup_sql.log" || { log "the dataset's first context differs from the table's"; cat "$OUT/setup_sql.log" >&2; return 1; }

    local cfg
    cfg=$(printf '{"model_name": "ts1l", "dataset_path": "rand", "hook_point": "blocks.0.hook_mlp_out", "hook_point_layer": 0, "d_in": %d, "expansion_factor": %d, "context_size": %d, "train_batch_size": %d, "store_batch_size": %d, "n_batches_in_buffer": %d, "total_training_tokens": %d, "lr": 0.0008, "lr_scheduler_name": "constant", "lr_warm_up_steps": 0, "l1_coefficient": 0.001, "adam_beta1": 0, "adam_beta2": 0.999, "b_dec_init_method": "zeros", "eval_every_n_wandb_logs": 0, "wandb_log_frequency": 10, "seed": 42, "verbose": true}' \
        "$D_IN" "$EXP" "$CTX" "$B" "$STORE_BS" "$NBUF" "$TOTAL")
    echo "$cfg" >"$OUT/config_ours.json"

    local rep busy s0 s1
    for rep in $(seq 1 "$REPEATS"); do
        busy=$(wait_quiet)
        log "repeat $rep: sae_train, $STEPS steps (machine ${busy}% busy before)"
        s0=$(stat_snap)
        "${psql[@]}" 2>&1 <<SQL | stamp >"$OUT/ours_$rep.log"
SET sae.threads = $THREADS;
SET sae.max_memory = '16GB';
SET sae.progress_every = 1;
SELECT split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint
     + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint AS cpu0 \gset
\timing on
\pset format unaligned
\pset fieldsep '|'
\pset tuples_only on
SELECT 'RESULT', run_id, n_steps, n_tokens, l0, tokens_per_second, seconds FROM sae_train('$cfg');
\timing off
SELECT 'FINAL', final_metrics->>'sparse_steps', final_metrics->>'rows_read' FROM sae.runs ORDER BY run_id DESC LIMIT 1;
SELECT 'CPUTICKS', split_part(pg_read_file('/proc/self/stat'), ' ', 14)::bigint
     + split_part(pg_read_file('/proc/self/stat'), ' ', 15)::bigint - :cpu0;
SQL
        s1=$(stat_snap)
        if ! grep -q ' RESULT|' "$OUT/ours_$rep.log"; then
            log "sae_train failed; its output:"
            cat "$OUT/ours_$rep.log" >&2
            return 1
        fi
        python3 - "$OUT/ours_$rep.log" "$rep" "$B" "$HALF" "$THREADS" "$busy" "$(getconf CLK_TCK)" $s0 $s1 >>"$OUT/ours.jsonl" <<'PY'
import json, re, statistics as S, sys
path, rep, B, half, threads, busy, hz = sys.argv[1:8]
b0, t0, b1, t1 = map(int, sys.argv[8:12])
B, half, hz = int(B), int(half), int(hz)
lines = [l.split(" ", 1) for l in open(path).read().splitlines() if " " in l]
txt = "\n".join(l[1] for l in lines)
res = next(l[1] for l in lines if l[1].startswith("RESULT|")).split("|")
_, run_id, n_steps, n_tokens, l0, tps, secs = res
_, sparse_steps, rows_read = next(l[1] for l in lines if l[1].startswith("FINAL|")).split("|")
l0_steps = [float(x) for x in re.findall(r"step \d+/\d+ \| \d+ tokens/s \| .*? \| L0 ([0-9.]+)", txt)]
n_tokens, secs = int(n_tokens), float(secs)
e2e = float(re.search(r"^Time: ([0-9.]+) ms", txt, re.M).group(1)) / 1000
ticks = int(next(l[1] for l in lines if l[1].startswith("CPUTICKS|")).split("|")[1])
# arrival times: last start-up NOTICE -> the b_dec NOTICE = the first half-buffer's LM forward
t_start = max(float(t) for t, l in lines if "Number tokens in sparsity calculation window" in l)
t_bdec = next(float(t) for t, l in lines if "initializing b_dec to zeros" in l)
prefill = t_bdec - t_start
# each step's NOTICE: cumulative tokens/s since the loop began -> elapsed -> per-step seconds
el = {int(k): int(k) * B / float(t) for k, t in re.findall(r"step (\d+)/\d+ \| (\d+) tokens/s", txt)}
ks = sorted(el)
step_s = [el[k] - (el[k - 1] if k > 1 else 0.0) for k in ks]
per_half = half // B
refill = [i for i, k in enumerate(ks) if (k - 1) % per_half == 0]        # steps that refilled first
plain = [step_s[i] for i in range(len(ks)) if i not in refill and i > 0]  # step 1 also pays page faults
plain_med = S.median(plain) if plain else float("nan")
refill_s = [step_s[i] - plain_med for i in refill]
others = max(0.0, (b1 - b0) - ticks) / max(1, t1 - t0)
print(json.dumps({
    "rep": int(rep), "run_id": int(run_id), "n_steps": int(n_steps), "n_tokens": n_tokens, "l0": float(l0),
    "tokens_per_second": float(tps), "seconds": secs, "e2e_seconds": e2e,
    "sparse_steps": int(sparse_steps), "rows_read": int(rows_read), "l0_per_step": l0_steps,
    "prefill_seconds": prefill, "equal_work_seconds": secs + prefill,
    "equal_work_tokens_per_second": n_tokens / (secs + prefill),
    "step_seconds": step_s, "step_median_no_refill_s": plain_med,
    "refill_extra_seconds": refill_s, "refills_in_loop": len(refill),
    "lm_seconds_est": sum(refill_s), "lm_tokens_in_loop": len(refill) * half,
    "lm_tokens_per_second_est": half / (prefill) if prefill > 0 else 0,
    "lm_tokens_per_second_loop": len(refill) * half / sum(refill_s) if refill_s and sum(refill_s) > 0 else 0,
    "backend_cpu_cores": ticks / hz / e2e / int(threads),
    "busy_before": int(busy), "others": others}))
PY
        show_last ours "$OUT/ours.jsonl"

        busy=$(wait_quiet)
        log "repeat $rep: SAELens, $STEPS steps (machine ${busy}% busy before)"
        s0=$(stat_snap)
        if ! python3 "$here/train_lm_saelens.py" train "$MODEL_CACHE" --tokens "$OUT/tokens.npy" \
                --context-size "$CTX" --expansion-factor "$EXP" --batch "$B" --store-batch-size "$STORE_BS" \
                --n-batches-in-buffer "$SL_NBUF" --total-tokens "$TOTAL" --lr 0.0008 --l1 0.001 \
                --adam-beta1 0 --adam-beta2 0.999 --threads "$THREADS" --pre-timer-lm-calls "$PRE_CALLS" \
                >"$OUT/saelens_$rep.json" 2>"$OUT/saelens_$rep.err"; then
            log "train_lm_saelens.py failed:"
            tail -30 "$OUT/saelens_$rep.err" >&2
            cat "$OUT/saelens_$rep.json" >&2
            return 1
        fi
        s1=$(stat_snap)
        python3 - "$OUT/saelens_$rep.json" "$rep" "$busy" "$(getconf CLK_TCK)" $s0 $s1 >>"$OUT/saelens.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
hz = int(sys.argv[4])
b0, t0, b1, t1 = map(int, sys.argv[5:9])
r["rep"] = int(sys.argv[2]); r["busy_before"] = int(sys.argv[3])
r["others"] = max(0.0, (b1 - b0) - r["process_cpu_seconds"] * hz) / max(1, t1 - t0)
print(json.dumps(r))
PY
        show_last saelens "$OUT/saelens.jsonl"
        "${psql[@]}" -c "TRUNCATE sae.runs CASCADE" >/dev/null
    done
}

if [ "$INSIDE" -eq 1 ]; then
    inside
    exit $?
fi

# ---------------------------------------------------------------- machine, build, model, tokens
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') (family $(grep -m1 'cpu family' /proc/cpuinfo | awk '{print $NF}'), model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | awk '{print $NF}'))"
    echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -oE '\b(avx2|fma|avx512f|hypervisor)\b' | tr '\n' ' ')"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB"
    echo "env OPENBLAS*/OMP*: $(env | grep -E '^(OPENBLAS|OMP|GOMP)_' | tr '\n' ' ')"
    echo "python: $(python3 -c 'from importlib.metadata import version as v; print(" ".join(f"{p} {v(p)}" for p in ("sae-lens", "transformer-lens", "torch", "transformers", "datasets")))' 2>/dev/null)"
    echo "openblas: $(dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n' 'libopenblas0*' 2>/dev/null | awk '$1 == "ii" {printf "%s %s  ", $2, $3}')"
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null) ($(git -C "$root" status --porcelain -- src 2>/dev/null | wc -l) files under src/ differ from it)"
    so="$("$PG_CONFIG" --pkglibdir)/sae.so"
    echo "installed: $so, $(stat -c '%s bytes, modified %y' "$so" 2>/dev/null)"
} >"$OUT/machine.txt"

if [ "$BUILD" -eq 1 ]; then
    log "building and installing the extension"
    if ! { make -s PG_CONFIG="$PG_CONFIG" && make -s PG_CONFIG="$PG_CONFIG" install; } >"$OUT/build.log" 2>&1; then
        cat "$OUT/build.log" >&2
        log "the extension did not build or install"
        exit 1
    fi
fi

if [ ! -s "$MODEL_CACHE/model.safetensors" ] || [ ! -s "$MODEL_CACHE/merges.txt" ]; then
    log "making the model in $MODEL_CACHE (bench/lm_forward.py make)"
    rm -rf "$MODEL_CACHE.tmp"
    python3 "$here/lm_forward.py" make "$MODEL_CACHE.tmp" >"$OUT/make_model.log" 2>&1 \
        || { cat "$OUT/make_model.log" >&2; exit 1; }
    rm -rf "$MODEL_CACHE" && mv "$MODEL_CACHE.tmp" "$MODEL_CACHE"
fi
chmod -R a+rX "$MODEL_CACHE"
python3 "$here/train_lm_saelens.py" tokens "$OUT/tokens" --contexts "$N_CTX" --context-size "$CTX" --seed 0 \
    >"$OUT/tokens.json" || exit 1
chmod a+r "$OUT"/tokens.*

: >"$OUT/ours.jsonl"
: >"$OUT/saelens.jsonl"
log "results in $OUT; $REPEATS pairs of $STEPS steps, context $CTX, $N_CTX contexts, threads $THREADS"
pg_virtualenv -t -v 15 -- bash -c "$(declare -p B EXP D_IN CTX STORE_BS NBUF HALF SL_NBUF PRE_CALLS TOTAL STEPS); $(declare -f log cpu_busy stat_snap wait_quiet stamp show_last inside); here='$here'; inside" \
    2>&1 | tee "$OUT/server.log" >&2
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    log "the PostgreSQL part failed (log: $OUT/server.log)"
    exit 1
fi

# ---------------------------------------------------------------- summary
python3 - "$OUT" "$THREADS" "$OTHERS_MAX" "$CTX" "$STEPS" "$B" "$HALF" <<'PY' | tee "$OUT/summary.txt"
import json, os, statistics as S, sys
out, threads, others_max, ctx, steps, B, half = sys.argv[1], sys.argv[2], float(sys.argv[3]) / 100, *map(int, sys.argv[4:8])
ours = {r["rep"]: r for r in map(json.loads, open(os.path.join(out, "ours.jsonl")))}
sl = {r["rep"]: r for r in map(json.loads, open(os.path.join(out, "saelens.jsonl")))}
reps = sorted(set(ours) & set(sl))
print()
print(open(os.path.join(out, "machine.txt")).read().rstrip())
print(f"threads: {threads} (SET sae.threads / torch.set_num_threads); context {ctx}; {steps} steps of {B} tokens; "
      f"half-buffer {half} tokens")
c = sl[reps[0]]["check"]
print(f"check: TL blocks.0.hook_mlp_out vs HF transformer.h[0].mlp on {c['tokens']} tokens: "
      f"max|diff|/max|HF| {c['max_abs_diff_rel']:.1e}, ||diff||/||HF|| {c['frobenius_rel']:.1e}")
print()
print("tokens/s: 'loop' = sae_train's own number; 'eq' = equal work (ours + its first half-buffer's LM forward); "
      "SAELens = tokens / SAETrainer.fit seconds")
print(f"{'rep':>3} | {'ours loop':>9} {'ours eq':>8} {'oth%':>5} | {'SAELens':>8} {'oth%':>5} | {'eq ratio':>8} {'loop/fit':>8}")
pairs = []
for k in reps:
    o, s = ours[k], sl[k]
    clean = o["others"] <= others_max and s["others"] <= others_max
    pairs.append((k, o, s, clean))
any_clean = any(p[3] for p in pairs)
for k, o, s, clean in pairs:
    print(f"{k:>3} | {o['tokens_per_second']:9.1f} {o['equal_work_tokens_per_second']:8.1f} {100*o['others']:5.1f} | "
          f"{s['tokens_per_second']:8.1f} {100*s['others']:5.1f} | "
          f"{o['equal_work_tokens_per_second']/s['tokens_per_second']:8.3f} {o['tokens_per_second']/s['tokens_per_second']:8.3f}"
          + ("  (contended: left out)" if any_clean and not clean else ""))
keep = [p for p in pairs if p[3]] or pairs
med = lambda f: S.median(f(o, s) for _, o, s, _ in keep)
print()
print("where the time goes (medians):")
print(f"  ours:    loop {med(lambda o, s: o['seconds']):.1f} s = SAE steps ~{med(lambda o, s: o['step_median_no_refill_s']):.2f} s each "
      f"x {med(lambda o, s: o['n_steps'])} + {med(lambda o, s: o['refills_in_loop'])} refills of {half} tokens "
      f"({med(lambda o, s: o['lm_seconds_est']):.1f} s: LM forward + shuffle, {med(lambda o, s: o['lm_tokens_per_second_loop']):.0f} tokens/s); "
      f"sparse-path steps {med(lambda o, s: o['sparse_steps'])}; first half-buffer before the loop "
      f"{med(lambda o, s: o['prefill_seconds']):.1f} s = {med(lambda o, s: o['lm_tokens_per_second_est']):.0f} LM tokens/s; "
      f"statement {med(lambda o, s: o['e2e_seconds']):.1f} s")
print(f"  SAELens: fit {med(lambda o, s: s['seconds']):.1f} s = SAE steps {med(lambda o, s: s['sae_step_seconds']):.1f} s "
      f"({med(lambda o, s: s['sae_step_median_s']):.2f} s each) + LM {med(lambda o, s: s['lm_seconds']):.1f} s "
      f"({med(lambda o, s: s['lm_calls'])} calls, {med(lambda o, s: s['lm_tokens'])} tokens, "
      f"{med(lambda o, s: s['lm_tokens_per_second']):.0f} LM tokens/s) + other {med(lambda o, s: s['other_seconds']):.1f} s")
print(f"  SAE step ratio (SAELens median step / ours median step): "
      f"{med(lambda o, s: s['sae_step_median_s'] / o['step_median_no_refill_s']):.2f}x; "
      f"LM forward ratio (ours LM tokens/s / SAELens LM tokens/s): "
      f"{med(lambda o, s: o['lm_tokens_per_second_loop'] / s['lm_tokens_per_second']):.2f}x in the loop's refills, "
      f"{med(lambda o, s: o['lm_tokens_per_second_est'] / s['lm_tokens_per_second']):.2f}x for the first half-buffer")
print(f"  LM tokens forwarded: ours {med(lambda o, s: o['rows_read'])} (rows_read, incl. the first half-buffer), "
      f"SAELens {med(lambda o, s: s['lm_tokens'])}")
print(f"  L0 at the end: ours {med(lambda o, s: o['l0']):.0f}, SAELens {med(lambda o, s: s['last_l0']):.0f} (of 16384)")
note = f"median of {len(keep)} of {len(pairs)} pairs" + ("" if any_clean else ", all contended")
print()
print(f"ours {med(lambda o, s: o['tokens_per_second']):.1f} tokens/s (loop), {med(lambda o, s: o['equal_work_tokens_per_second']):.1f} "
      f"(equal work); SAELens {med(lambda o, s: s['tokens_per_second']):.1f} tokens/s")
print(f"ours/SAELens, loop vs fit:  {med(lambda o, s: o['tokens_per_second'] / s['tokens_per_second']):.3f}x ({note})")
print(f"ours/SAELens, equal work:   {med(lambda o, s: o['equal_work_tokens_per_second'] / s['tokens_per_second']):.3f}x ({note})")
PY
