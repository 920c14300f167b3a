#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, lint, then pytest against real processes.
# Extra arguments go to pytest. Exit code is pytest's; "no tests ran" (5) is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
# Real Apptainer (from Debian sid, pinned) for the container tests; installing needs root.
if [ "$(id -u)" -eq 0 ]; then
    apptainer_log=$(mktemp)
    bash scripts/install_apptainer.sh > "$apptainer_log" 2>&1 || { cat "$apptainer_log" >&2; exit 1; }
    rm -f "$apptainer_log"
fi
# tmux, in which the tests of `tqhpc top` watch the live view as a person would (they skip without it).
if [ "$(id -u)" -eq 0 ] && ! command -v tmux >/dev/null && [ -r /etc/debian_version ]; then
    export DEBIAN_FRONTEND=noninteractive
    flock /var/lock/tqhpc-apt.lock apt-get update -qq
    flock /var/lock/tqhpc-apt.lock apt-get install -y -qq --no-install-recommends tmux >/dev/null
fi
bash scripts/bootstrap.sh
# The real single-node Slurm the Slurm pool tests run against (install and start need root). Without
# root, export SLURM_CONF of a running cluster yourself; the Slurm tests fail (never skip) when none answers.
if [ "$(id -u)" -eq 0 ]; then
    bash slurm/install.sh
    eval "$(bash slurm/start-cluster.sh "${TQHPC_SLURM_DIR:-$PWD/.slurm}")"
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$status"
