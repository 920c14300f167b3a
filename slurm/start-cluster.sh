#!/usr/bin/env bash
# Start a single-node Slurm cluster (munge, slurmctld, slurmd) whose config and state live in DIR.
# Prints `export SLURM_CONF=DIR/slurm.conf` on stdout; everything else goes to stderr. Root only. Running it again
# while the cluster answers changes nothing. The tests and benchmarks/bench_slurm.py use this same config.
set -euo pipefail
dir=${1:?usage: slurm/start-cluster.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/slurm.conf
say() { echo "start-cluster: $*" >&2; }

if [ -f "$conf" ] && SLURM_CONF=$conf timeout 10 sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
    say "the cluster of $conf is already up"
    echo "export SLURM_CONF=$conf"
    exit 0
fi

# Slurm's ports are the machine's: a cluster started from another DIR (another checkout) is reused if it answers.
for pid in $(pgrep -x slurmctld || true); do
    other=$(tr '\0' '\n' < "/proc/$pid/cmdline" | sed -n '/^-f$/{n;p;}' | head -n1)
    if [ -n "$other" ] && [ -f "$other" ] \
        && SLURM_CONF=$other timeout 10 sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
        say "reusing the cluster already running with $other (stop it with slurm/stop-cluster.sh $(dirname "$other"))"
        echo "export SLURM_CONF=$other"
        exit 0
    fi
done

# munge: one key for the machine, a socket directory owned by munge.
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey -c -f -k /etc/munge/munge.key >&2; else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    { runuser -u munge -- munged --force 2>/dev/null || munged --force; } >&2
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || { say "munged does not answer"; exit 1; }

host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
mkdir -p "$dir/spool/ctld" "$dir/spool/d" "$dir/log"
# Prompt starts: schedule at submission and at job end without deferring; no batching delay.
# KillWait/OverTimeLimit: a job at its time limit gets SIGTERM, then SIGKILL 10 s later.
cat > "$conf" <<CONF
ClusterName=tqhpc
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$dir/spool/ctld
SlurmdSpoolDir=$dir/spool/d
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
KillWait=10
OverTimeLimit=0
MinJobAge=300
MaxArraySize=1001
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES OverSubscribe=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF=$conf
# A previous cluster of this DIR may still run with an old config: stop it first.
for daemon in slurmd slurmctld; do
    pidfile=$dir/$daemon.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")"; sleep 1
    fi
done
slurmctld -f "$conf" -c -i >&2
slurmd -f "$conf" >&2
for _ in $(seq 100); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n1 || true)
    case $state in
        idle|mixed|allocated) break ;;
        down*|drain*) scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.3
done
if ! sinfo -h -o %T | grep -Eq '^(idle|mixed|allocated)'; then
    say "the node did not become idle; see $dir/log/"
    sinfo >&2 || true
    exit 1
fi
say "node $host is up with $cpus CPUs and $memory MiB"
echo "export SLURM_CONF=$conf"
