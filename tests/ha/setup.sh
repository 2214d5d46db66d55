#!/usr/bin/env bash
# Creates (or updates) the Home Assistant virtualenv used by tests/host/test_ha_real.py.
# Home Assistant 2025.x needs Python 3.13: MEP_HA_PYTHON, python3.13 on PATH, or pyenv's.
# Usage: tests/ha/setup.sh [venv dir]   (default: <repo>/.venv-ha, or MEP_HA_VENV)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REQ="$ROOT/tests/ha/requirements.txt"
VENV="${1:-${MEP_HA_VENV:-$ROOT/.venv-ha}}"

find_python() {
    local c
    for c in "${MEP_HA_PYTHON:-}" python3.13; do
        [ -n "$c" ] || continue
        if command -v "$c" >/dev/null 2>&1 \
            && "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' 2>/dev/null; then
            command -v "$c"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        c="$(pyenv root)/versions"
    else
        c="${PYENV_ROOT:-$HOME/.pyenv}/versions"
    fi
    for c in "$c"/3.13*/bin/python3.13; do
        if [ -x "$c" ] && "$c" -c 'import ensurepip, venv' 2>/dev/null; then
            echo "$c"; return 0
        fi
    done
    return 1
}

PY="$(find_python)" || {
    echo "tests/ha/setup.sh: no Python 3.13 found (set MEP_HA_PYTHON, put python3.13 on PATH or install it with pyenv)" >&2
    exit 3
}
want="$(sha256sum "$REQ" | cut -c1-64) $("$PY" -c 'import sys; print(sys.version.split()[0])')"
stamp="$VENV/.dev-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
if [ -e "$VENV" ] && ! "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)' >/dev/null 2>&1; then
    [ -f "$VENV/pyvenv.cfg" ] || { echo "$VENV exists but is not a virtualenv" >&2; exit 1; }
    rm -rf "$VENV"
fi
[ -e "$VENV" ] || "$PY" -m venv "$VENV"
echo "==> pip install -r tests/ha/requirements.txt into $VENV (Home Assistant: this takes minutes)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
printf '%s\n' "$want" >"$stamp"
