#!/usr/bin/env bash
# Make PostgreSQL available for the tests that share a study through an Optuna RDB storage
# (tests/_postgres.py starts its own throwaway cluster on 127.0.0.1; nothing is started here).
#
# Idempotent: does nothing when a PostgreSQL server (initdb, pg_ctl, postgres) is already installed
# under /usr/lib/postgresql/*/bin and psycopg2 imports. Otherwise installs Debian's `postgresql`
# package (as root, or through sudo) and the `psycopg2-binary` wheel.
#
# Never fails: when it cannot install, it prints a warning and exits 0; the PostgreSQL tests then
# skip, saying to run this script.
set -uo pipefail

PYTHON="${PYTHON:-python3}"

warn() { echo "postgres.sh: WARNING: $*" >&2; }
say() { echo "postgres.sh: $*"; }

server_bin() {
    # Newest installed major version whose bin/ holds the three programs the tests need.
    local dir
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -n -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

if bin="$(server_bin)"; then
    say "PostgreSQL server found in $bin"
else
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        SUDO=(missing)
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        warn "apt-get not found; install PostgreSQL yourself (tests needing it will skip)"
    elif [ "${SUDO[0]:-}" = missing ]; then
        warn "not root and no password-less sudo; cannot install PostgreSQL (tests needing it will skip)"
    else
        say "installing PostgreSQL from Debian's packages"
        export DEBIAN_FRONTEND=noninteractive
        if timeout 600 "${SUDO[@]}" apt-get update -qq \
            && timeout 900 "${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null; then
            :
        else
            warn "apt-get could not install postgresql (tests needing it will skip)"
        fi
    fi
    if bin="$(server_bin)"; then
        say "PostgreSQL server installed in $bin"
    else
        warn "no PostgreSQL server under /usr/lib/postgresql/*/bin; tests needing it will skip"
    fi
fi

# PostgreSQL's server refuses to run as root: the tests run it as the `postgres` system user, which
# Debian's package creates.
if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
    warn "no 'postgres' system user; the tests cannot start a server as root (they will skip)"
fi

if "$PYTHON" -c "import psycopg2" >/dev/null 2>&1; then
    say "psycopg2 found"
elif "$PYTHON" -m pip install -q "psycopg2-binary>=2.9"; then
    say "psycopg2-binary installed"
else
    warn "could not install psycopg2-binary (tests needing PostgreSQL will skip)"
fi
exit 0
