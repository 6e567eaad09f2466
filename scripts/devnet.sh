#!/usr/bin/env bash
# Run `byteleap devnet` (a whole local network on CPU and SQLite) from a fresh checkout.
# Arguments go to `byteleap devnet`; see `scripts/devnet.sh --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
exec byteleap devnet "$@"
