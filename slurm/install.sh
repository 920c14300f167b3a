#!/usr/bin/env bash
# Install Slurm and munge for the single-node development and test cluster. Root only; idempotent.
# Debian 12 gives Slurm 22.05, Debian 13 gives 24.11; both work with start-cluster.sh.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "slurm/install.sh: Slurm is not installed and installing it needs root" >&2
    exit 1
fi
if [ ! -r /etc/debian_version ]; then
    echo "slurm/install.sh: only Debian (12 or 13) is supported; install slurm-wlm and munge yourself" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
flock /var/lock/tqhpc-apt.lock apt-get update -qq
flock /var/lock/tqhpc-apt.lock apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
command -v slurmctld >/dev/null && command -v sbatch >/dev/null
