#!/usr/bin/env bash
# Stop the single-node cluster that start-cluster.sh DIR started: cancel its jobs, stop slurmd and slurmctld.
# munged is left running: other Slurm or munge users on the machine may need it.
set -euo pipefail
dir=${1:?usage: slurm/stop-cluster.sh DIR}
dir=$(cd "$dir" && pwd)
export SLURM_CONF=$dir/slurm.conf
[ -f "$SLURM_CONF" ] && timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
for daemon in slurmd slurmctld; do
    pidfile=$dir/$daemon.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        pid=$(cat "$pidfile")
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
done
echo "stop-cluster: stopped the cluster of $dir" >&2
