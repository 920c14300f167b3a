#!/usr/bin/env bash
# Make .venv with tqhpc, its development tools, matplotlib (the plot extra, which the tests draw with) and Snakemake
# (for the executor plugin's tests). Safe to run again: it reinstalls only when pyproject.toml changed.
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
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,plot,snakemake]' 2> .venv/install.log \
        || { cat .venv/install.log >&2; exit 1; }
    # The checkout itself on sys.path: Snakemake finds executor plugins by listing the modules there, and setuptools'
    # editable finder hides snakemake_executor_plugin_tqhpc from that listing.
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    pwd > "$site/tqhpc-checkout.pth"
    echo "$wanted" > "$stamp"
fi
