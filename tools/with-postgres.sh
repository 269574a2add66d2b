#!/usr/bin/env bash
# Run a command with a PostgreSQL server available to the test suite.
#
#   tools/with-postgres.sh CMD [ARGS...]
#
# - If NIM_WORKFLOW_TEST_PG_URL is already set, the caller has a server: just run CMD.
# - Otherwise, if PostgreSQL server binaries are installed, start a throwaway cluster in a
#   temporary directory (its own socket, a free port on 127.0.0.1, durability switched off
#   because the data is thrown away), create the database `nimwf`, export
#   NIM_WORKFLOW_TEST_PG_URL, run CMD, then stop the server and delete the directory, whatever
#   way CMD ends. CMD's exit code is kept.
# - With no server binaries, say loudly that the PostgreSQL suite will be skipped and run CMD;
#   under CI (CI set to anything but "", "0" or "false") that is an error instead, so a CI
#   run can never pass without PostgreSQL.
#
# A throwaway cluster, rather than the system one, means no shared state between runs: a
# cluster left running by someone else, or a half-finished earlier run, cannot break this one.
#
# NIM_WORKFLOW_PG_BINDIR overrides where the server binaries are looked for (set it to a
# directory without them to try the "no PostgreSQL" path).
set -euo pipefail

say() { printf 'with-postgres: %s\n' "$*" >&2; }

if [ "$#" -eq 0 ]; then
    say "usage: tools/with-postgres.sh CMD [ARGS...]"
    exit 2
fi

if [ -n "${NIM_WORKFLOW_TEST_PG_URL:-}" ]; then
    exec "$@"
fi

# --- find the server binaries -------------------------------------------------------------
has_server() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

find_bindir() {
    if [ -n "${NIM_WORKFLOW_PG_BINDIR:-}" ]; then
        # An explicit choice is final: never fall back to a server the caller did not ask for.
        if has_server "$NIM_WORKFLOW_PG_BINDIR"; then echo "$NIM_WORKFLOW_PG_BINDIR"; fi
        return 0
    fi
    local dir
    # pg_config may come from a client-only package, so check it points at a real server.
    if dir="$(pg_config --bindir 2>/dev/null)" && has_server "$dir"; then
        echo "$dir"
        return 0
    fi
    # Debian installs each major version side by side; take the newest.
    dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    if [ -n "$dir" ] && has_server "$dir"; then echo "$dir"; fi
    return 0
}

BINDIR="$(find_bindir)"
if [ -z "$BINDIR" ]; then
    # Any CI spelling counts ("true", "1", "yes", ...); only "", "0" and "false" do not.
    ci="$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')"
    if [ -n "$ci" ] && [ "$ci" != "0" ] && [ "$ci" != "false" ]; then
        say "PostgreSQL server not found and CI=${CI}: refusing to run the suite without it."
        say "Install the server (Debian: apt-get install postgresql) or set NIM_WORKFLOW_TEST_PG_URL."
        exit 1
    fi
    echo "PostgreSQL server not found: the PostgreSQL suite will be SKIPPED" >&2
    exec "$@"
fi

# --- who runs the server ------------------------------------------------------------------
# initdb and postgres refuse to run as root, so root hands them to the `postgres` user.
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        say "running as root, but there is no 'postgres' user to run the server as"
        exit 1
    fi
    if command -v runuser >/dev/null 2>&1; then
        as_pg() { runuser -u postgres -- "$@"; }
    else
        as_pg() { su postgres -s /bin/bash -c "$(printf '%q ' "$@")"; }
    fi
else
    as_pg() { "$@"; }
fi

# --- the throwaway cluster ----------------------------------------------------------------
# The postgres user must be able to reach the directory; a root TMPDIR (say /root/tmp) may
# not let it through, so root falls back to /tmp, which everyone can traverse.
BASE="${TMPDIR:-/tmp}"
if [ "$(id -u)" -eq 0 ] && ! as_pg test -w "$BASE" 2>/dev/null; then
    BASE=/tmp
fi
# Keep the path short: a Unix socket path must fit in about 100 bytes.
WORKDIR="$(mktemp -d "$BASE/nimwf-pg.XXXXXX")"
DATADIR="$WORKDIR/data"
LOGFILE="$WORKDIR/server.log"
STARTED=no
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$WORKDIR"
fi

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$STARTED" = yes ]; then
        # A fast stop is enough: nothing here is worth keeping. If the server already went
        # (Ctrl-C reaches it too), pg_ctl says so and that is fine.
        as_pg "$BINDIR/pg_ctl" -D "$DATADIR" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || as_pg "$BINDIR/pg_ctl" -D "$DATADIR" -m immediate -w stop >/dev/null 2>&1 \
            || true
    fi
    rm -rf "$WORKDIR"
    exit "$rc"
}
trap cleanup EXIT
# Turn signals into an ordinary exit so the EXIT trap runs with a meaningful status.
trap 'exit 130' INT
trap 'exit 143' TERM

# -A trust: the cluster lives for one run and listens only on a private socket and loopback.
# -U postgres: the same superuser name whoever runs this, so the URL below always works.
# --no-sync: nothing needs to survive a crash of a throwaway cluster.
if ! as_pg "$BINDIR/initdb" -D "$DATADIR" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$WORKDIR/initdb.log" 2>&1; then
    say "initdb failed:"
    cat "$WORKDIR/initdb.log" >&2
    exit 1
fi

# A free port, asked of the kernel. Another process could take it before the server binds,
# but that is rare and then the start below fails loudly rather than silently.
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

# Settings go in the config file rather than on the command line, to avoid quoting trouble.
# fsync, synchronous_commit and full_page_writes off trade crash safety, which a throwaway
# cluster does not need, for much faster CREATE DATABASE and commits.
cat >>"$DATADIR/postgresql.conf" <<EOF

# --- added by tools/with-postgres.sh for a throwaway test cluster ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORKDIR'
max_connections = 100
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

if ! as_pg "$BINDIR/pg_ctl" -D "$DATADIR" -l "$LOGFILE" -w -t 60 start >/dev/null; then
    say "the PostgreSQL server did not start; its log:"
    cat "$LOGFILE" >&2 || true
    exit 1
fi
STARTED=yes

# Create the database over TCP, the same way the tests will connect, so a broken URL shows
# up here rather than as a confusing test failure.
"$BINDIR/createdb" -h 127.0.0.1 -p "$PORT" -U postgres nimwf

export NIM_WORKFLOW_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/nimwf"
say "throwaway PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT ($WORKDIR)"

# Not exec: the trap must still run afterwards to stop the server.
set +e
"$@"
rc=$?
set -e
exit "$rc"
