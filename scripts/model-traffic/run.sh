#!/usr/bin/env bash
# Runs the model-traffic generator (gen.py) in its own virtual environment.
#
# The environment lives at ${CUSTOS_VENV:-$HOME/.cache/custos-model-venv}.
# It is created on first use and (re)installed only when requirements.txt
# changed since the last install (a SHA-256 of the file is kept inside it),
# so later runs start at once. All arguments go to gen.py, e.g.
#   scripts/model-traffic/run.sh --out /tmp/model-traffic --days 3 --seed 7
# PYTHON picks the interpreter that creates the environment (default
# python3; 3.11 or later).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CUSTOS_VENV:-$HOME/.cache/custos-model-venv}"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "model-traffic: creating the environment at $venv" >&2
    "${PYTHON:-python3}" -m venv "$venv"
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "model-traffic: installing requirements into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
    echo "$want" > "$stamp"
fi
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" "$here/gen.py" "$@"
