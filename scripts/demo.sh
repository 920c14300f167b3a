#!/usr/bin/env bash
# The main job on a fresh machine: a server, a local worker and the example sweep, then everything stops.
# Needs no Slurm and no Apptainer. State (database, logs, access.toml) stays in .demo/ for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
TQHPC=.venv/bin/tqhpc
STATE=.demo/state
mkdir -p .demo
export TQHPC_ACCESS=$PWD/$STATE/access.toml

pids=()
cleanup() {  # the worker first, so it can say goodbye to the server, then the server
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT

rm -rf "$STATE"  # each run starts from an empty queue
$TQHPC server --state-dir "$STATE" --listen 127.0.0.1:0 > .demo/server.out 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    [ -s "$TQHPC_ACCESS" ] && break
    sleep 0.1
done
[ -s "$TQHPC_ACCESS" ] || { cat .demo/server.out; echo "the server did not start" >&2; exit 1; }
head -1 .demo/server.out

$TQHPC worker --concurrency 2 --prefetch 2 --name demo-worker > .demo/worker.out 2>&1 &
pids+=($!)

.venv/bin/python examples/sweep.py
echo
$TQHPC tasks
$TQHPC workers
echo "state, logs and the database are in $STATE; worker output in .demo/worker.out"
echo "each task's output is a plain file too: $STATE/logs/0000/1.out (stdout) and 1.err (stderr)"
