#!/usr/bin/env bash
# Set up, then run the main demo in a throw-away PostgreSQL 15 server: load the bundled story
# model (demo/model), look at what it does, tokenize the bundled stories, train an SAE on the
# model's residual stream and show what its features respond to (scripts/demo.sql), with a
# feature dashboard and the run report written to demo-output/.
#   scripts/demo.sh               the language-model demo
#   scripts/demo.sh --synthetic   the synthetic-dictionary demo (scripts/demo_synthetic.sql)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
if [ "${1:-}" = "--synthetic" ]; then
    exec pg_virtualenv -t -v 15 -- psql -X -v ON_ERROR_STOP=1 -f scripts/demo_synthetic.sql
fi
# the server (user postgres when run as root) reads the model and the stories from here
work=$(mktemp -d -t sae-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r demo/model demo/stories.jsonl "$work/"
chmod -R a+rX "$work"
# the HTML pages the demo writes (a feature's dashboard and the run's report)
out="$PWD/demo-output"
mkdir -p "$out"
pg_virtualenv -t -v 15 -- psql -X -v ON_ERROR_STOP=1 -v demo="$work" -v out="$out" -f scripts/demo.sql
