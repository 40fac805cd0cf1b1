#!/usr/bin/env bash
# A sharded FastL2LiR fit on a real SLURM: a one-node cluster on 127.0.0.1 (munge + slurmctld +
# slurmd started here as root, under a private folder), a job array of shards
# (`neurofit ridge fit --shard slurm`), `neurofit ridge merge`, and a byte-for-byte comparison
# with the one-process fit. Stops exactly the daemons it started (by their pid files).
#
# Usage: tests/slurm/run.sh [path/to/neurofit]   (default target/release/neurofit)
# Where SLURM cannot be started (no slurm-wlm, not root) it prints a visible SKIPPED line and
# exits 0, unless NEUROFIT_REQUIRE_SLURM=1 (CI), which makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
NF="$(realpath "${1:-target/release/neurofit}")"

skip() {
    if [ "${NEUROFIT_REQUIRE_SLURM:-}" = 1 ]; then
        echo "error: NEUROFIT_REQUIRE_SLURM=1 but $1" >&2
        exit 1
    fi
    echo "SKIPPED (SLURM test): $1"
    exit 0
}

for b in munged slurmctld slurmd sbatch sinfo squeue; do
    command -v "$b" >/dev/null 2>&1 || skip "$b is not installed (apt-get install slurm-wlm munge)"
done
[ "$(id -u)" = 0 ] || skip "the one-node cluster needs root"
[ -x "$NF" ] || { echo "error: $NF is not built (cargo build --release)" >&2; exit 1; }

T="$(mktemp -d /tmp/neurofit-slurm.XXXXXX)"
mkdir -p "$T/state" "$T/spool" "$T/log" "$T/munge"
chmod 700 "$T/munge"

stop() {
    for p in slurmd slurmctld munged; do
        if [ -s "$T/$p.pid" ]; then
            kill "$(cat "$T/$p.pid")" 2>/dev/null || true
        fi
    done
    sleep 1
    for p in slurmd slurmctld munged; do
        if [ -s "$T/$p.pid" ]; then
            kill -9 "$(cat "$T/$p.pid")" 2>/dev/null || true
        fi
    done
}
trap stop EXIT

# munge with a private socket and a random 1 KiB key
head -c 1024 /dev/urandom > "$T/munge/key"
chmod 400 "$T/munge/key"
munged --force --socket="$T/munge/sock" --key-file="$T/munge/key" \
    --pid-file="$T/munged.pid" --log-file="$T/log/munged.log" --seed-file="$T/munge/seed"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
CTLD_PORT="$(free_port)"
D_PORT="$(free_port)"
HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
cat > "$T/slurm.conf" <<EOF
ClusterName=neurofit
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
AuthInfo=socket=$T/munge/sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$T/slurm.conf"
slurmctld -f "$SLURM_CONF" || skip "slurmctld did not start ($(tail -n 3 "$T/log/slurmctld.log" 2>/dev/null | tr '\n' ' '))"
slurmd -f "$SLURM_CONF" || skip "slurmd did not start ($(tail -n 3 "$T/log/slurmd.log" 2>/dev/null | tr '\n' ' '))"
for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -q idle; then break; fi
    sleep 1
done
sinfo -h -o '%T' | grep -q idle || skip "the node never became idle: $(sinfo 2>&1 | tr '\n' ' ')"

# the data: a small fixture-like problem with N-d units
X=../shared/fixtures/fastl2lir/chunked_3d/X_train.npy
Y=../shared/fixtures/fastl2lir/chunked_3d/Y_train.npy
[ -f "$X" ] || { echo "error: $X is missing (../shared beside the checkout)" >&2; exit 1; }
OUT="$T/shards"
N=3
for form in --sparse ""; do
    rm -rf "$OUT"
    JOB=$(sbatch --parsable --array=0-$((N - 1)) --output="$T/log/shard-%a.out" --chdir="$T" \
        --wrap "$NF ridge fit --quiet --device cpu --n-feat 25 --alpha 5 $form --x $(realpath $X) --y $(realpath $Y) --shard slurm --out $OUT")
    for _ in $(seq 1 300); do
        if [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ]; then break; fi
        sleep 1
    done
    [ -z "$(squeue -h -j "$JOB" 2>/dev/null)" ] || { echo "error: array job $JOB did not finish" >&2; exit 1; }
    for i in $(seq 0 $((N - 1))); do
        p=$(printf '%s/part-%05d-of-%05d.npz' "$OUT" "$i" "$N")
        [ -f "$p" ] || { echo "error: shard $i wrote no part; its log: $(cat "$T/log/shard-$i.out")" >&2; exit 1; }
    done
    "$NF" ridge merge "$OUT" --out "$T/merged.npz" --quiet
    "$NF" ridge fit --quiet --device cpu --n-feat 25 --alpha 5 $form --x "$X" --y "$Y" --out "$T/whole.npz"
    # the same model: identical predictions, byte for byte
    XT=../shared/fixtures/fastl2lir/chunked_3d/X_test.npy
    "$NF" ridge predict --device cpu --model "$T/merged.npz" --x "$XT" --out "$T/p_merged.npy"
    "$NF" ridge predict --device cpu --model "$T/whole.npz" --x "$XT" --out "$T/p_whole.npy"
    "$NF" ridge predict --device cpu --model "$OUT" --x "$XT" --out "$T/p_dir.npy"
    cmp "$T/p_merged.npy" "$T/p_whole.npy"
    cmp "$T/p_dir.npy" "$T/p_whole.npy"
    if [ -n "$form" ]; then cmp "$T/merged.npz" "$T/whole.npz"; fi
    echo "slurm: ${form:---dense} array of $N shards merged = one-process fit (bit for bit)"
done
echo "1 passed, 0 failed"
