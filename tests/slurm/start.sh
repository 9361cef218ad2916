#!/usr/bin/env bash
# Starts a single-node Slurm on this machine (as root, without systemd) for the tests marked
# `slurm`: writes tests/slurm/slurm.conf with this host's name, CPUs and memory to
# /etc/slurm/slurm.conf, starts munged, slurmctld and slurmd in the background, and waits
# until `sinfo` answers with the node idle. Needs Debian's slurm-wlm and munge packages.
#   tests/slurm/start.sh            start (again: stops the daemons it started before)
#   SLURM_STATE=/path start.sh      state, spool and logs there (default /var/spool/sharpdarts-slurm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${SLURM_STATE:-/var/spool/sharpdarts-slurm}"

for tool in munged slurmctld slurmd sinfo; do
    command -v "$tool" >/dev/null || { echo "start.sh: $tool is not installed" >&2; exit 1; }
done

# A second start replaces the daemons of the first (their pid files are in the state folder).
for pid_file in "$state/slurmd.pid" "$state/slurmctld.pid"; do
    if [ -s "$pid_file" ]; then
        kill "$(cat "$pid_file")" 2>/dev/null || true
    fi
done
sleep 1
mkdir -p "$state/ctld" "$state/d" /etc/slurm

# The node line as slurmd sees this machine (name, CPUs, sockets, cores, memory), less 5% of
# the memory so that the node is not drained for reporting a little less after a restart.
node="$(slurmd -C | head -n 1)"
host="$(echo "$node" | sed -n 's/^NodeName=\([^ ]*\).*/\1/p')"
memory="$(echo "$node" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
node="$(echo "$node" | sed "s/RealMemory=[0-9]*/RealMemory=$((memory * 95 / 100))/")"
sed -e "s|@HOST@|$host|g" -e "s|@STATE@|$state|g" -e "s|@NODE@|$node|" \
    "$here/slurm.conf" > /etc/slurm/slurm.conf

# munge: one key (the package makes one), its socket folder, the daemon as the munge user.
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    fi
    runuser -u munge -- /usr/sbin/munged
fi

slurmctld -i   # -i: ignore any state left by an earlier start (no job from then remains)
slurmd

for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
        sinfo
        exit 0
    fi
    sleep 1
done
echo "start.sh: Slurm did not answer within 60 s; logs in $state" >&2
sinfo >&2 || true
tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
exit 1
