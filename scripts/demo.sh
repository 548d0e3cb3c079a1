#!/usr/bin/env bash
# Set up, then train an SAE on the bundled synthetic activation set (scripts/demo.sql) in a
# throw-away PostgreSQL 15 server, and show what it learned.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
pg_virtualenv -t -v 15 -- psql -X -v ON_ERROR_STOP=1 -f scripts/demo.sql
