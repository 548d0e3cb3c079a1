#!/usr/bin/env bash
# Install what sae needs on Debian 12, then build it with -Werror and install it into
# PostgreSQL 15. Safe to run again: apt is skipped when every package is already there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(
    build-essential
    postgresql-15
    postgresql-server-dev-15
    postgresql-15-pgtap
    libtap-parser-sourcehandler-pgtap-perl
    libopenblas-dev
    libopenblas0-openmp
    postgresql-common
    libcurl4-openssl-dev
    python3
    chromium
    fonts-dejavu-core
)

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
else
    sudo=(sudo)
fi

# Run a command with its output kept in a log that is shown only if it fails,
# so a normal run stays quiet and a failing one still explains itself.
quietly() {
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "setup.sh: failed: $*" >&2
        return 1
    fi
    rm -f "$log"
}

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    quietly "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    quietly "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${packages[@]}"
fi

# Name the server explicitly: /usr/bin/pg_config follows whichever server-dev is newest.
pg_config=/usr/lib/postgresql/15/bin/pg_config

echo "setup.sh: building sae (WERROR=1)"
make -s -j"$(nproc)" PG_CONFIG="$pg_config" WERROR=1 all
echo "setup.sh: installing sae into $("$pg_config" --pkglibdir)"
quietly "${sudo[@]}" make PG_CONFIG="$pg_config" install
