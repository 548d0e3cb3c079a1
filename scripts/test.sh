#!/usr/bin/env bash
# Set up, then run every sae test: the engine unit tests (and the CUDA ones against the kernels
# emulated on the CPU), then pg_regress and pgTAP against a
# throw-away PostgreSQL 15 server made by pg_virtualenv. Prints each runner's own output, and
# ends with one line "N passed, N failed" totalled over all three; exits non-zero if any test
# failed, a runner broke without saying which test, or the server crashed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

pg_config=/usr/lib/postgresql/15/bin/pg_config
logdir=$(mktemp -d -t sae-test.XXXXXX)
trap 'rm -rf "$logdir"' EXIT

passed=0
failed=0

# Run a command, showing its output and keeping a copy in a log; returns the command's status.
run_logged() {
    local log=$1
    shift
    "$@" 2>&1 | tee "$log"
    return "${PIPESTATUS[0]}"
}

# Add one stage's counts to the totals. A runner that exits non-zero without naming a failed
# test (it did not build, it crashed, it could not connect) still counts as one failure.
tally() {
    local stage=$1 ok=$2 bad=$3 rc=$4
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        echo "== $stage: exited with status $rc without reporting a failed test; counted as one failure"
        bad=1
    fi
    echo "== $stage: $ok ok, $bad not ok"
    passed=$((passed + ok))
    failed=$((failed + bad))
}

# TAP from one stream ("ok N - name", "not ok N - name", optional plan "1..N"): tests that the
# plan promised but never reported (the runner died midway) count as failed. A skipped test
# ("ok N - name # SKIP why") is neither passed nor failed; the skips are listed at the end.
count_tap() {
    awk '
        /^1\.\.[0-9]+/       { split($0, p, /\.\./); planned = p[2] + 0 }
        /^ok [0-9]+.*# SKIP/ { skip++; next }
        /^ok [0-9]+/         { ok++ }
        /^not ok [0-9]+/     { if ($0 ~ /# *TODO/) ok++; else bad++ }
        END {
            missing = planned - ok - bad - skip
            if (missing > 0) bad += missing
            print ok + 0, bad + 0
        }' "$1"
}

# pg_regress: PG15 prints "test name ... ok   12 ms" (or indented inside a parallel group) and
# "... FAILED"; PG16 and later print TAP ("ok 1  - name  12 ms", "not ok 2  - name").
count_regress() {
    awk '
        / \.\.\. ok( |$)/            { ok++ }
        / \.\.\. FAILED/             { bad++ }
        /^ok [0-9]+ +[-+] /          { ok++ }
        /^not ok [0-9]+ +[-+] /      { bad++ }
        END { print ok + 0, bad + 0 }' "$1"
}

# pg_prove --verbose: the TAP lines of every file, then the harness summary. A file that died
# before its plan was done says "You planned N tests but ran M"; the missing ones count as failed.
count_pgtap() {
    awk '
        /^ok [0-9]+/         { ok++ }
        /^not ok [0-9]+/     { if ($0 ~ /# *TODO/) ok++; else bad++ }
        /You planned [0-9]+ tests? but ran [0-9]+/ {
            for (i = 1; i <= NF; i++) {
                if ($i == "planned") planned = $(i + 1)
                if ($i == "ran") ran = $(i + 1)
            }
            if (planned - ran > 0) bad += planned - ran
        }
        END { print ok + 0, bad + 0 }' "$1"
}

# The server-side part, run inside pg_virtualenv (PG* variables point at the throw-away
# server). Writes each runner's log and exit status into $1; exits non-zero only if the server
# crashed, so that pg_virtualenv then shows the server log.
server_tests() {
    local logdir=$1 pg_config=$2 rc

    if compgen -G 'sql/*.sql' >/dev/null; then
        rm -f regression.diffs
        make -s PG_CONFIG="$pg_config" installcheck 2>&1 | tee "$logdir/regress.log"
        rc=${PIPESTATUS[0]}
        echo "$rc" >"$logdir/regress.rc"
        if [ "$rc" -ne 0 ] && [ -f regression.diffs ]; then
            echo "---- regression.diffs ----"
            cat regression.diffs
            echo "---- end of regression.diffs ----"
        fi
    else
        echo "== pg_regress: no tests in sql/"
    fi

    if compgen -G 'test/pgtap/*.sql' >/dev/null; then
        # If a backend crashed under pg_regress, the server restarts: give the postmaster a
        # moment to notice, then wait until it takes connections again.
        if [ "$(cat "$logdir/regress.rc" 2>/dev/null || echo 0)" -ne 0 ]; then
            local tries=30
            sleep 1
            until pg_isready -q || [ "$tries" -eq 0 ]; do
                tries=$((tries - 1))
                sleep 1
            done
        fi
        if createdb sae_pgtap &&
            psql -X -q -v ON_ERROR_STOP=1 -d sae_pgtap \
                -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION sae'; then
            pg_prove --verbose -d sae_pgtap test/pgtap/*.sql 2>&1 | tee "$logdir/pgtap.log"
            echo "${PIPESTATUS[0]}" >"$logdir/pgtap.rc"
        else
            echo "== pgTAP: could not create database sae_pgtap with extensions pgtap and sae"
            : >"$logdir/pgtap.log"
            echo 1 >"$logdir/pgtap.rc"
        fi
    else
        echo "== pgTAP: no tests in test/pgtap/"
    fi

    # The HTML pages, rendered by headless Chromium: a screenshot that is not blank and shows
    # the shading or plots, and the tokens, bars and curves in the rendered page.
    local n input='The cat <sat> on the mat.' run feature example q=(psql -X -At -v ON_ERROR_STOP=1 -d sae_pgtap)
    mkdir -p "$logdir/html/log_probs" "$logdir/html/dashboard" "$logdir/html/report"
    : >"$logdir/html.log"
    echo 0 >"$logdir/html.rc"
    if "${q[@]}" -c "SELECT sae_load_model('tiny-gpt2', '$SAE_TEST_LM/gpt2')" >/dev/null &&
        n=$("${q[@]}" -c "SELECT array_length(sae_to_tokens('tiny-gpt2', \$\$$input\$\$), 1)") &&
        "${q[@]}" -c "SELECT sae_token_log_probs_html('tiny-gpt2', \$\$$input\$\$)" >"$logdir/html/log_probs/page.html"; then
        python3 test/html/check_page.py "$logdir/html/log_probs/page.html" "$logdir/html/log_probs" --ignore-class tip \
            --expect-text "<|endoftext|>$input" --expect-selector-count "tok=$n" \
            --expect-selector-count "tip=$((n - 1))" --expect-hue red 2>&1 | tee -a "$logdir/html.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || echo 1 >"$logdir/html.rc"
    else
        echo "not ok 1 - could not make the page with sae_token_log_probs_html" | tee -a "$logdir/html.log"
        echo 1 >"$logdir/html.rc"
    fi
    # a small SAE on the tiny GPT-2, analysed, for the feature dashboard and the run report
    if "${q[@]}" -q -c "SET client_min_messages = warning" -c "SET sae.threads = 1" \
            -c "CREATE TABLE html_stories AS SELECT format('Once upon a time, %s had a %s.', (ARRAY['Tom', 'Lily'])[1 + i % 2], (ARRAY['ball', 'cat', 'kite'])[1 + i % 3]) AS t FROM generate_series(1, 200) i" \
            -c "SELECT sae_create_dataset('html-stories', 'tiny-gpt2', 'SELECT t FROM html_stories', 32) > 0" \
            -c "SELECT run_id FROM sae_train('{\"model_name\": \"tiny-gpt2\", \"dataset_path\": \"html-stories\", \"hook_point\": \"blocks.0.hook_resid_post\", \"hook_point_layer\": 0, \"d_in\": 32, \"d_sae\": 64, \"context_size\": 32, \"train_batch_size\": 64, \"store_batch_size\": 4, \"n_batches_in_buffer\": 4, \"total_training_tokens\": 6400, \"lr_warm_up_steps\": 0, \"lr\": 0.003, \"wandb_log_frequency\": 5, \"eval_every_n_wandb_logs\": 2, \"n_eval_batches\": 1, \"feature_sampling_window\": 20}')" \
            -c "SELECT count(*) > 0 FROM sae_top_logits(currval('sae.runs_run_id_seq'), 5)" \
            -c "SELECT n_tokens > 0 FROM sae_analyze(currval('sae.runs_run_id_seq'), 3000, 5)" >/dev/null &&
        run=$("${q[@]}" -c "SELECT max(run_id) FROM sae.runs WHERE config->>'dataset_path' = 'html-stories'") &&
        feature=$("${q[@]}" -c "SELECT feature_id FROM sae.feature_stats WHERE run_id = $run ORDER BY firing_rate DESC, feature_id LIMIT 1") &&
        example=$("${q[@]}" -c "SELECT string_agg(t, '' ORDER BY o) FROM sae.feature_examples, unnest(tokens) WITH ORDINALITY u(t, o) WHERE run_id = $run AND feature_id = $feature AND rank = 1") &&
        "${q[@]}" -c "SELECT sae_feature_dashboard($run, $feature)" >"$logdir/html/dashboard/page.html" &&
        "${q[@]}" -c "SELECT sae_run_report($run)" >"$logdir/html/report/page.html"; then
        python3 test/html/check_page.py "$logdir/html/dashboard/page.html" "$logdir/html/dashboard" \
            --expect-text "Feature $feature" --expect-text "$example" --expect-text "Positive logits" \
            --expect-selector-count "bar=32" --expect-selector-count "ex=5" --expect-selector-count "logits=2" \
            --expect-selector-count "top=5" --expect-hue orange 2>&1 | tee -a "$logdir/html.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || echo 1 >"$logdir/html.rc"
        python3 test/html/check_page.py "$logdir/html/report/page.html" "$logdir/html/report" \
            --expect-text "Run $run" --expect-text "Explained variance" --expect-text "CE loss score" \
            --expect-text "Config" --expect-selector-count "chart=6" --expect-selector-count "line=6" \
            --expect-hue blue 2>&1 | tee -a "$logdir/html.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || echo 1 >"$logdir/html.rc"
    else
        echo "not ok 1 - could not make the feature dashboard and run report pages" | tee -a "$logdir/html.log"
        echo 1 >"$logdir/html.rc"
    fi

    # pg_virtualenv -t keeps the server log beside its PGSYSCONFDIR.
    local log
    for log in "${PGSYSCONFDIR%/*}"/log/*.log; do
        [ -f "$log" ] || continue
        grep -E 'terminated by signal|terminated by exception|PANIC:' "$log" >>"$logdir/crashes.log"
    done
    if [ -s "$logdir/crashes.log" ]; then
        echo "== the server crashed:"
        cat "$logdir/crashes.log"
        return 1
    fi
    return 0
}

echo "==== setup"
setup_ok=1
if ! bash scripts/setup.sh; then
    setup_ok=0
    tally "setup (build with WERROR=1 and install)" 0 1 0
fi

echo "==== engine unit tests"
if compgen -G 'test/unit/*.c' >/dev/null; then
    run_logged "$logdir/unit.log" make -s PG_CONFIG="$pg_config" WERROR=1 unittest
    rc=$?
    read -r ok bad < <(count_tap "$logdir/unit.log")
    tally "unit tests" "$ok" "$bad" "$rc"
else
    echo "== unit tests: none in test/unit/"
fi

# The CUDA backend's kernels run here whatever the machine: compiled by g++ against the CPU
# emulation in test/cuda_emu, under the same CPU-vs-CUDA tests (test_cuda.c).
echo "==== CUDA kernels emulated on the CPU"
run_logged "$logdir/emu.log" make -s PG_CONFIG="$pg_config" WERROR=1 emutest
rc=$?
read -r ok bad < <(count_tap "$logdir/emu.log")
tally "CUDA kernels emulated on the CPU" "$ok" "$bad" "$rc"

# The model fixtures, where the server (user postgres when run as root) can read them, and a
# Hugging Face hub cache holding one of them as huggingface_hub lays it out: blobs named by
# hash, a snapshot of relative symlinks, refs/main naming the snapshot.
make_model_fixtures() {
    local dir=$1 repo snap sha f blob
    mkdir -p "$dir"
    cp -r test/fixtures/lm "$dir/lm"
    cp -r test/fixtures/datasets "$dir/datasets"
    cp -r test/fixtures/saelens "$dir/saelens"
    # where sae_export may write: the server runs as another user when the tests run as root
    mkdir -p "$dir/export"
    chmod 1777 "$dir/export"
    mkdir -p "$dir/demo"
    cp -r demo/model demo/stories.jsonl "$dir/demo/"
    cp test/cuda_emu/sae_cuda_emu.so "$dir/" 2>/dev/null || true    # made by the emulation stage
    repo="$dir/hub/models--sae-test--tiny-gpt2"
    sha=0123456789abcdef0123456789abcdef01234567
    snap="$repo/snapshots/$sha"
    mkdir -p "$repo/blobs" "$repo/refs" "$snap"
    printf '%s' "$sha" >"$repo/refs/main"
    for f in config.json model.safetensors vocab.json merges.txt; do
        blob=$(sha256sum "test/fixtures/lm/gpt2/$f" | cut -d' ' -f1)
        cp "test/fixtures/lm/gpt2/$f" "$repo/blobs/$blob"
        ln -s "../../blobs/$blob" "$snap/$f"
    done
    chmod -R a+rX "$dir"
}

echo "==== pg_regress and pgTAP on a throw-away PostgreSQL 15"
if [ "$setup_ok" -eq 1 ]; then
    make_model_fixtures "$logdir/fixtures"
    chmod a+rx "$logdir"
    export SAE_TEST_LM="$logdir/fixtures/lm" SAE_TEST_HUB="$logdir/fixtures/hub" \
        SAE_TEST_DATASETS="$logdir/fixtures/datasets" SAE_TEST_DEMO="$logdir/fixtures/demo" \
        SAE_TEST_SAELENS="$logdir/fixtures/saelens" SAE_TEST_EXPORT="$logdir/fixtures/export" \
        SAE_TEST_CUDA_EMU="$logdir/fixtures/sae_cuda_emu.so"
    # -t keeps the cluster in a temporary directory even as root, so a run killed midway
    # leaves nothing behind that would stop the next one.
    pg_virtualenv -t -v 15 -- bash -c "$(declare -f server_tests); server_tests \"\$@\"" \
        server_tests "$logdir" "$pg_config"
    venv_rc=$?
    if [ -f "$logdir/regress.rc" ]; then
        read -r ok bad < <(count_regress "$logdir/regress.log")
        tally "pg_regress" "$ok" "$bad" "$(cat "$logdir/regress.rc")"
    fi
    if [ -f "$logdir/pgtap.rc" ]; then
        read -r ok bad < <(count_pgtap "$logdir/pgtap.log")
        tally "pgTAP" "$ok" "$bad" "$(cat "$logdir/pgtap.rc")"
    fi
    if [ -f "$logdir/html.rc" ]; then
        read -r ok bad < <(count_tap "$logdir/html.log")
        tally "HTML pages in headless Chromium" "$ok" "$bad" "$(cat "$logdir/html.rc")"
    fi
    if [ -s "$logdir/crashes.log" ]; then
        tally "server" 0 1 0
    elif [ "$venv_rc" -ne 0 ]; then
        tally "pg_virtualenv" 0 0 "$venv_rc"
    fi
else
    echo "== skipped: the extension did not build or install"
fi

skips=$(grep -h '^ok [0-9].*# SKIP' "$logdir"/*.log 2>/dev/null || true)
if [ -n "$skips" ]; then
    echo "== skipped, counted neither passed nor failed:"
    printf '%s\n' "$skips" | sed 's/^/   /'
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
