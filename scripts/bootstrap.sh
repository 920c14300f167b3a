#!/usr/bin/env bash
# Make .venv with tqhpc, its development tools and Snakemake (for the executor plugin's tests). Safe to run again: it
# reinstalls only when pyproject.toml changed.
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
    # compat: the checkout itself goes on sys.path, so Snakemake, which finds executor plugins by listing the modules
    # there, sees snakemake_executor_plugin_tqhpc (setuptools' default editable finder hides it from that listing).
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --config-settings editable_mode=compat \
        -e '.[dev,snakemake]' 2> .venv/install.log \
        || { cat .venv/install.log >&2; exit 1; }
    echo "$wanted" > "$stamp"
fi
