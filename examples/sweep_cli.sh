#!/usr/bin/env bash
# The sweep of examples/sweep.py from the command line: one `tqhpc submit --param` call (one batch), a wait
# with a progress bar, then every task's stdout collected into results.jsonl.
#
#   TQHPC_ACCESS=STATE_DIR/access.toml bash examples/sweep_cli.sh [OUTPUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TQHPC=${TQHPC:-tqhpc}
PYTHON=${PYTHON:-python3}
out=${1:-.}
name=integrate-cli-$$

$TQHPC submit --name "$name" --retry 1 --param a=1,2,3,4 --param b=0,0.5,1 \
    -- "$PYTHON" "$here/integrate.py" --a {a} --b {b}
$TQHPC wait --name "$name" --timeout "${TIMEOUT:-300}"

: > "$out/results.jsonl"
for id in $($TQHPC tasks --name "$name" --status S --json | "$PYTHON" -c \
    'import json, sys; print(" ".join(str(t["task_id"]) for t in json.load(sys.stdin)))'); do
    $TQHPC logs "$id" >> "$out/results.jsonl"
done
echo "collected $(wc -l < "$out/results.jsonl") results in $out/results.jsonl"
