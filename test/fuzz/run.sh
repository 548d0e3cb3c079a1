#!/usr/bin/env bash
# test/fuzz/run.sh SECONDS [TARGET...]
#
# Builds the fuzz targets with clang's libFuzzer (plus ASan and UBSan) and
# runs each for SECONDS on a copy of its committed seed corpus
# (test/fuzz/corpus/<target>/), so the repository is never written to.
# Targets: the X of each test/fuzz/fuzz_X.c (default: all).  Everything goes
# to a temporary folder (FUZZ_WORK to choose it): binaries, the grown
# corpora, logs, and crash-*/leak-*/timeout-* inputs if any.  Exits 1 if a
# target found a crash, a leak or a hang.  Needs clang: apt-get install clang.
set -euo pipefail

secs=${1:?usage: test/fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
all=$(for f in test/fuzz/fuzz_*.c; do f=${f#test/fuzz/fuzz_}; echo "${f%.c}"; done)
targets=${*:-$all}

cc=${FUZZ_CC:-}
if [ -z "$cc" ]; then
	for c in clang clang-16 clang-15 clang-14; do
		if command -v "$c" >/dev/null; then cc=$c; break; fi
	done
fi
if [ -z "$cc" ]; then
	echo "run.sh: clang not found (apt-get install clang)" >&2
	exit 2
fi

work=${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/sae-fuzz.XXXXXX")}
mkdir -p "$work"
cflags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
	-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Isrc/core)
# The engine's file parsers: plain C, no BLAS, no OpenMP.
engine=()
for f in error json mapfile safetensors torch_pickle tokenizer lm_config dataset_file saelens; do
	if [ -f "src/core/$f.c" ]; then engine+=("src/core/$f.c"); fi
done
echo "fuzzing with $cc for ${secs}s per target; output in $work"

status=0
for t in $targets; do
	"$cc" "${cflags[@]}" -o "$work/fuzz_$t" "test/fuzz/fuzz_$t.c" "${engine[@]}"
	mkdir -p "$work/$t" "$work/$t.seeds"
	if [ -d "test/fuzz/corpus/$t" ]; then cp -r "test/fuzz/corpus/$t/." "$work/$t.seeds/"; fi
	dict=()
	if [ -f "test/fuzz/$t.dict" ]; then dict=(-dict="test/fuzz/$t.dict"); fi
	if "$work/fuzz_$t" "$work/$t" "$work/$t.seeds" "${dict[@]}" \
		-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$work/$t-" -print_final_stats=1 >"$work/$t.log" 2>&1; then
		result=ok
	else
		result="FAILED (see $work/$t.log)"
		status=1
	fi
	runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' || echo '?')
	cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$work/$t.log" | tail -1 || true)
	echo "$t: $result; $runs runs; $cov; corpus $(ls "$work/$t" | wc -l) inputs"
done
exit $status
