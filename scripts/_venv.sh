# Sourced by the entry-point scripts: create or reuse the virtualenv and install byteleap[dev]
# into it (again only when pyproject.toml changed). Override the location with BYTELEAP_VENV.
venv="${BYTELEAP_VENV:-.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating virtualenv $venv" >&2
    "$python" -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
stamp="$venv/.byteleap-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing byteleap[dev] into $venv" >&2
    python -m pip install --quiet --upgrade pip >&2
    python -m pip install --quiet -e ".[dev]" >&2
    echo "$want" > "$stamp"
fi
