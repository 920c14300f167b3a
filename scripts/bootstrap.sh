#!/usr/bin/env bash
# Make .venv with tqhpc, its development tools and matplotlib (the plot extra, which the tests draw with).
# Safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.tqhpc-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,plot]' 2> .venv/install.log \
        || { cat .venv/install.log >&2; exit 1; }
    echo "$wanted" > "$stamp"
fi
