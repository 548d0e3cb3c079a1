#!/usr/bin/env bash
# bench/top_logits.sh — sae_top_logits against PyTorch on the CPU: the seed's cell (W_dec @ W_U,
# top and bottom k tokens per feature) for a 16384-feature SAE of a d_model 1024, 50257-token
# model (TinyStories-1L-21M's shape, random weights: bench/lm_forward.py make).
#
#   bench/top_logits.sh [--repeats N] [--no-build]
#
# The SAE is random, written by SAELens 6 (bench/top_logits.py make-sae) and read with
# sae_import.  Ours: sae_top_logits(run, 10) timed by psql (\timing), which also stores the
# 2 x 10 x 16384 rows of sae.feature_logits with their token texts; PyTorch: the matmul and two
# torch.topk calls (nothing stored).  THREADS threads on both sides (default nproc).  Each side
# runs REPEATS times (default 3) in one run; the medians' ratio is printed last.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
REPEATS=3
BUILD=1
while [ $# -gt 0 ]; do
    case $1 in
        --repeats) REPEATS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) echo "usage: $0 [--repeats N] [--no-build]" >&2; exit 2 ;;
    esac
done
THREADS=${THREADS:-$(nproc)}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
MODEL_CACHE=${MODEL_CACHE:-/tmp/sae-bench-train-lm-model}
OUT=${OUT:-$(mktemp -d -t sae-bench-top-logits.XXXXXX)}
mkdir -p "$OUT"
chmod a+rx "$OUT"
. "$here/machine.sh"     # log

if [ "$BUILD" -eq 1 ]; then
    log "building and installing the extension"
    { make -s PG_CONFIG="$PG_CONFIG" && make -s PG_CONFIG="$PG_CONFIG" install; } >"$OUT/build.log" 2>&1 \
        || { cat "$OUT/build.log" >&2; exit 1; }
fi
if [ ! -s "$MODEL_CACHE/model.safetensors" ]; then
    log "making the model in $MODEL_CACHE"
    python3 "$here/lm_forward.py" make "$MODEL_CACHE" >"$OUT/make_model.log" 2>&1 \
        || { cat "$OUT/make_model.log" >&2; exit 1; }
fi
chmod -R a+rX "$MODEL_CACHE"
rm -rf "$OUT/sae"
python3 "$here/top_logits.py" make-sae "$MODEL_CACHE" "$OUT/sae" >"$OUT/make_sae.log" 2>&1 \
    || { cat "$OUT/make_sae.log" >&2; exit 1; }
chmod -R a+rX "$OUT/sae"

log "PyTorch: $REPEATS x (W_dec @ W_U, topk largest and smallest), $THREADS threads"
python3 "$here/top_logits.py" time "$MODEL_CACHE" "$OUT/sae" --threads "$THREADS" --repeats "$REPEATS" \
    >"$OUT/torch.json" 2>"$OUT/torch.log" || { cat "$OUT/torch.log" >&2; exit 1; }

log "ours: $REPEATS x sae_top_logits(run, 10), $THREADS threads"
cmds=(-c "CREATE EXTENSION sae" -c "SET sae.threads = $THREADS"
      -c "SELECT sae_load_model('bench-model', '$MODEL_CACHE') > 0"
      -c "SELECT sae_import('$OUT/sae') > 0" -c '\timing on')
for _ in $(seq "$REPEATS"); do
    cmds+=(-c "SELECT count(*) FROM sae_top_logits(1, 10)")
done
cmds+=(-c '\timing off'
       -c "SELECT token_id FROM sae.feature_logits WHERE run_id = 1 AND feature_id = 0 AND rank = 1 ORDER BY bottom")
pg_virtualenv -t -v 15 -- psql -X -q -v ON_ERROR_STOP=1 "${cmds[@]}" >"$OUT/ours.log" 2>&1 \
    || { cat "$OUT/ours.log" >&2; exit 1; }

python3 - "$OUT/torch.json" "$OUT/ours.log" <<'PY'
import json, re, statistics, sys
t = json.load(open(sys.argv[1]))
log = open(sys.argv[2]).read()
ours = [float(x) / 1000 for x in re.findall(r"Time: ([0-9.]+) ms", log)]
firsts = re.findall(r"^\s*(\d+)\s*$", log, re.M)[-2:]
same = [int(x) for x in firsts] == [t["first_top"], t["first_bottom"]]
print(f"shape: {t['d_sae']} features x d_model {t['d_model']} x vocab {t['d_vocab']}, k 10")
print("PyTorch (matmul + 2 topk, nothing stored): " + " ".join(f"{s:.2f}" for s in t["seconds"]) + " s")
print("ours (sae_top_logits, rows stored):       " + " ".join(f"{s:.2f}" for s in ours) + " s")
print(f"feature 0's top and bottom token agree with torch: {same}")
m_t, m_o = statistics.median(t["seconds"]), statistics.median(ours)
print(f"median: ours {m_o:.2f} s, PyTorch {m_t:.2f} s; ours/PyTorch time ratio {m_o / m_t:.2f} (speed-up {m_t / m_o:.2f}x)")
PY
