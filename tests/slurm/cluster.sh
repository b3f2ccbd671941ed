#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, with accounting (slurmdbd on MariaDB) so that
# sacct works, and a fake GPU. `cluster.sh start` installs (apt), configures and starts the
# daemons directly (no systemd); `cluster.sh stop` stops what `start` started. Needs root.
set -euo pipefail

STATE=/tmp/reversibility-slurm
NODE=$(hostname -s)
CPUS=$(nproc)
MEMORY_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

start() {
    [ "$(id -u)" = 0 ] || { echo "cluster.sh: needs root" >&2; exit 2; }
    if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mysqld >/dev/null; then
        apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurm-client slurmdbd munge mariadb-server >/dev/null
    fi
    mkdir -p "$STATE" /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /run/munge /run/mysqld

    # munge: the authentication every Slurm daemon and client uses.
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || runuser -u munge -- munged

    # MariaDB holds the accounting database.
    chown mysql:mysql /run/mysqld
    if ! mysqladmin ping --silent 2>/dev/null; then
        (mysqld_safe --user=mysql >"$STATE/mysqld.log" 2>&1 &)
        for _ in $(seq 60); do mysqladmin ping --silent 2>/dev/null && break; sleep 1; done
    fi
    mysql -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

    cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
CONF
    chmod 600 /etc/slurm/slurmdbd.conf

    # A node with two fake GPUs: slurmd keeps a GRES only when gres.conf names a device file.
    cat >/etc/slurm/slurm.conf <<CONF
ClusterName=reversibility
SlurmctldHost=localhost
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEMORY_MB Gres=gpu:fake:2 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
    printf 'NodeName=%s Name=gpu Type=fake File=%s\n' "$NODE" /dev/null "$NODE" /dev/zero >/etc/slurm/gres.conf

    pgrep -x slurmdbd >/dev/null || slurmdbd
    for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
    sacctmgr -i add cluster reversibility >/dev/null 2>&1 || true
    sacctmgr -i add account default Cluster=reversibility >/dev/null 2>&1 || true
    sacctmgr -i add user root Account=default DefaultAccount=default >/dev/null 2>&1 || true
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        sinfo -h -N -o "%t" 2>/dev/null | grep -qE "^(idle|mix)" && { sinfo; return 0; }
        scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        sleep 1
    done
    echo "cluster.sh: the node never became idle" >&2
    sinfo -N -l >&2 || true
    tail -n 30 /var/log/slurm/slurmd.log /var/log/slurm/slurmctld.log >&2 || true
    exit 1
}

stop() {
    for daemon in slurmd slurmctld slurmdbd; do pkill -x "$daemon" 2>/dev/null || true; done
    mysqladmin shutdown 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
