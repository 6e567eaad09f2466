#!/usr/bin/env bash
# Run the whole ByteLeap test suite, exactly as CI does.
#
#   scripts/test.sh              # lint, types, layering, then every test
#   scripts/test.sh -k merkle    # extra arguments go to pytest
#   scripts/test.sh -n 0         # every test in one process (pytest-xdist off)
#
# pytest runs on pytest-xdist workers, two per core (most slow tests wait on processes and
# timers, not the CPU; BYTELEAP_TEST_WORKERS overrides the number), handing tests out one by one
# (--dist worksteal: a worker that runs dry takes queued tests from a busy one); each test gets
# its own temp directory, database and ports, so none share state. The quick lane of the
# edit-test loop is `python -m pytest -m "not slow"` (see docs/testing.md).
#
# It creates (or reuses) the virtualenv in .venv (override with BYTELEAP_VENV), installs the
# project with its [dev] extra, and points the tests at PostgreSQL: BYTELEAP_TEST_DATABASE_URL if
# set, else a server on 127.0.0.1:5432 if one answers, else the tests start an embedded
# PostgreSQL 18 themselves. No test is skipped for lack of a database.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/_venv.sh

if [ -z "${BYTELEAP_TEST_DATABASE_URL:-}" ]; then
    if python - <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
except OSError:
    sys.exit(1)
PY
    then
        export BYTELEAP_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test"
        echo "==> PostgreSQL: 127.0.0.1:5432 (database test)"
    else
        echo "==> PostgreSQL: none on 127.0.0.1:5432, the tests start an embedded one"
    fi
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

echo "==> ruff"
ruff check .
ruff format --check .
echo "==> mypy (strict, every package)"
mypy
echo "==> import-linter"
lint-imports
echo "==> pytest"
workers="${BYTELEAP_TEST_WORKERS:-$((2 * $(nproc)))}"
exec python -m pytest -n "$workers" --dist worksteal "$@"
