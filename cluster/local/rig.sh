#!/usr/bin/env bash
# cluster/local/rig.sh: a real Slurm cluster on this machine whose hosts are
# network namespaces, for tests and for trying the templates by hand.
# See cluster/local/README.md. Needs root, iproute2, munge and Debian's Slurm.
#
#   rig.sh up DIR K [--no-slurm]  K nodes node1..nodeK (10.77.0.11..) and a
#                                 login host (10.77.0.1) on a bridge that lives
#                                 in its own namespace; munged, slurmctld on
#                                 login, one slurmd per node (not with --no-slurm)
#   rig.sh down DIR               ends every process in the rig's namespaces
#                                 (ip netns pids) and munged (by its pid file),
#                                 deletes the namespaces and DIR;
#                                 works on a rig that failed half-way up
#   rig.sh exec DIR HOST CMD...   runs CMD on HOST (login, node1..): in its
#                                 network namespace, with its own hostname, and
#                                 SLURM_CONF pointing at the rig
#   rig.sh cut DIR HOST           takes HOST's link off the bridge (packets to
#                                 and from it are dropped); rig.sh heal DIR HOST
#                                 puts it back
#
# DIR holds everything: rig.env (names), etc/slurm.conf, munge/, logs in log/,
# hostfile (for mpirun --hostfile with cluster/local/rsh_agent.sh), and
# tmp/HOST and shm/HOST, which are HOST's /tmp and /dev/shm. DIR must not be
# under /tmp: like a real cluster's nodes, each host has a /tmp of its own,
# and job files (config, data, run folder) belong on a filesystem every host
# sees.
# The root namespace gets no address and no route; the test network exists
# only inside the rig's namespaces.
set -uo pipefail
RIG_NET=10.77.0
RIG=$(readlink -f "$0")

die() { echo "rig: $*" >&2; exit 1; }
need_root() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, slurmd); run as root or with sudo"
}

# load DIR: sets D, ID, K, SLURM, NS_BR, NS_LOGIN, and ns_of HOST
load() {
  D=$(cd "$1" 2>/dev/null && pwd) || die "no rig folder $1"
  [ -f "$D/rig.env" ] || die "$D/rig.env is missing: not a rig folder (rig.sh up DIR K makes one)"
  # shellcheck disable=SC1091
  source "$D/rig.env"
}
ns_of() { # HOST -> namespace name
  case $1 in
    login) echo "$NS_LOGIN" ;;
    node[0-9]*) local i=${1#node}; [ "$i" -ge 1 ] && [ "$i" -le "$K" ] || die "no host $1 in this rig (node1..node$K)"
               echo "${ID}n$i" ;;
    *) die "no host $1 in this rig (login, node1..node$K)" ;;
  esac
}
hosts() { echo login; for i in $(seq 1 "$K"); do echo "node$i"; done; }

# in_host HOST CMD...: CMD in HOST's network namespace, with its own hostname
# (UTS namespace), the rig's /etc/hosts, and a /tmp and /dev/shm of its own
# (a private mount namespace: Slurm's PMIx plugin and Open MPI keep per-job
# files there under names made of the host name and the job id, which would
# collide between hosts, or between two rigs, sharing one). Not
# `ip netns exec`: that remounts /sys, and slurmd needs the host's cgroup tree.
in_host() {
  local h=$1; shift
  local ns; ns=$(ns_of "$h") || exit 1
  # the source and build folders stay visible at their paths when they are
  # under /tmp (a clone there): bound into the private /tmp first
  SLURM_CONF="$D/etc/slurm.conf" SHARDLM_RIG="$D" RIG_KEEP="${SRC:-} ${BUILD:-}" \
    exec nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private -- \
      /bin/sh -c 'for p in $RIG_KEEP; do case $p in /tmp/?*) [ -d "$p" ] &&
                    mkdir -p "$2${p#/tmp}" && mount --bind "$p" "$2${p#/tmp}" || exit 1;; esac; done &&
                  hostname "$0" && mount --bind "$1" /etc/hosts && mount --rbind "$2" /tmp &&
                  mount --bind "$3" /dev/shm && shift 3 && exec "$@"' \
      "$h" "$D/etc/hosts" "$D/tmp/$h" "$D/shm/$h" "$@"
}

write_slurm_conf() {
  local nodes="node[1-$K]"
  mkdir -p "$D/etc" "$D/ctld" "$D/log"
  for i in $(seq 1 "$K"); do mkdir -p "$D/spool/node$i"; done
  cat > "$D/etc/slurm.conf" <<EOF
# written by cluster/local/rig.sh for the rig in $D
ClusterName=rig$ID
SlurmctldHost=login($RIG_NET.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job waits before it may start again
# (Slurm's default 120 s; shorter here so that the requeue tests are quick)
AuthInfo=socket=$D/munge/munge.socket,cred_expire=${RIG_CRED_EXPIRE:-10}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
SlurmdParameters=config_overrides
StateSaveLocation=$D/ctld
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/spool/%n/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
# How fast a lost node is noticed and a job's remains are cleaned up
# (README "Running on a cluster" discusses the values for real clusters).
SlurmctldTimeout=30
SlurmdTimeout=${RIG_SLURMD_TIMEOUT:-20}
MessageTimeout=${RIG_MESSAGE_TIMEOUT:-5}
KillWait=${RIG_KILL_WAIT:-5}
InactiveLimit=0
MinJobAge=600
SchedulerParameters=sched_interval=1
NodeName=DEFAULT CPUs=4 RealMemory=1000 Gres=gpu:4 State=UNKNOWN
EOF
  for i in $(seq 1 "$K"); do
    echo "NodeName=node$i NodeHostname=node$i NodeAddr=$RIG_NET.$((10 + i))" >> "$D/etc/slurm.conf"
  done
  echo "PartitionName=rig Nodes=$nodes Default=YES MaxTime=INFINITE State=UP" >> "$D/etc/slurm.conf"
  # four pretend GPUs per node (device files that are /dev/null): Slurm counts and
  # allocates them, which is all the templates' --gpus-per-node needs here
  mkdir -p "$D/dev" && for g in 0 1 2 3; do mknod "$D/dev/gpu$g" c 1 3; done
  echo "NodeName=$nodes Name=gpu File=$D/dev/gpu[0-3]" > "$D/etc/gres.conf"
}

start_munge() {
  mkdir -p "$D/munge" && chmod 700 "$D/munge"
  dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none && chmod 400 "$D/munge/munge.key"
  munged --force --key-file="$D/munge/munge.key" --socket="$D/munge/munge.socket" \
    --pid-file="$D/munge/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/munged.seed" ||
    die "munged did not start: $(tail -n 3 "$D/log/munged.log" 2>/dev/null)"
}

wait_for() { # SECONDS DESCRIPTION CMD...: polls CMD every 0.2 s
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  local rc
  while :; do
    "$@" >/dev/null; rc=$?
    [ $rc -eq 0 ] && return 0
    [ $rc -eq 2 ] && return 1 # gave up: no point in waiting
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}
link_up() { ip -n "$1" link show eth0 | grep -q LOWER_UP; }
nodes_idle() { # all K nodes idle according to sinfo on login
  local n
  kill -0 "$CTLD_PID" 2>/dev/null || { echo "rig: slurmctld exited: $(tail -n 4 "$D/log/slurmctld.out")" >&2; return 2; }
  n=$("$RIG" exec "$D" login sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | grep -c .)
  [ "$n" -eq "$K" ]
}

cmd_up() {
  need_root
  [ $# -ge 2 ] || die "usage: rig.sh up DIR K [--no-slurm]"
  local dir=$1; K=$2; SLURM=1
  [ "${3:-}" = --no-slurm ] && SLURM=0
  [[ "$K" =~ ^[1-9]$ ]] || die "K = $K: give 1 to 9 nodes"
  local need=(ip nsenter unshare mount)
  [ $SLURM -eq 1 ] && need+=(munged slurmctld slurmd sinfo)
  for c in "${need[@]}"; do
    command -v "$c" >/dev/null ||
      die "$c is missing: run make setup (Debian packages iproute2, util-linux, munge, slurm-wlm, slurmctld, slurmd, slurm-client)"
  done
  mkdir -p "$dir" && D=$(cd "$dir" && pwd)
  [ ! -f "$D/rig.env" ] || die "$D already holds a rig: rig.sh down $D first"
  [ -z "$(ls -A "$D")" ] || die "$D is not empty: give a new or empty folder"
  case $D/ in /tmp/*) rmdir "$D"; die "DIR $D is under /tmp, which each rig host has of its own: put it where every host sees it, e.g. /var/tmp";; esac
  # unique names: an id from the pid of this script, changed if a rig left
  # behind by a dead process happens to hold it
  ID=rg$(printf %x $$)
  while ip netns list | grep -Eq "^${ID}(br|lg|n[0-9])( |$)"; do ID=rg$(printf %x $$)x$RANDOM; done
  NS_BR=${ID}br NS_LOGIN=${ID}lg
  # written first, so that down can clean up whatever the rest managed to create
  printf 'ID=%s\nK=%s\nSLURM=%s\nNS_BR=%s\nNS_LOGIN=%s\n' "$ID" "$K" "$SLURM" "$NS_BR" "$NS_LOGIN" > "$D/rig.env"
  mkdir -p "$D/log"
  trap 'echo "rig: bringing the rig up failed; tearing it down" >&2; "$RIG" down "$D"' ERR
  set -e
  ip netns add "$NS_BR"
  ip -n "$NS_BR" link set lo up
  ip -n "$NS_BR" link add br0 type bridge
  ip -n "$NS_BR" link set br0 up
  local hostsfile="127.0.0.1 localhost"$'\n'"$RIG_NET.1 login"
  for i in $(seq 1 "$K"); do hostsfile+=$'\n'"$RIG_NET.$((10 + i)) node$i"; done
  mkdir -p "$D/etc" && echo "$hostsfile" > "$D/etc/hosts"
  for h in $(hosts); do mkdir -p "$D/tmp/$h" "$D/shm/$h" && chmod 1777 "$D/tmp/$h" "$D/shm/$h"; done
  : > "$D/hostfile"
  local i=0 h ns addr
  for h in $(hosts); do
    ns=$(ns_of "$h")
    if [ "$h" = login ]; then addr=$RIG_NET.1; else addr=$RIG_NET.$((10 + ${h#node})); echo "$h slots=4" >> "$D/hostfile"; fi
    ip netns add "$ns"
    ip -n "$NS_BR" link add "v$i" type veth peer name eth0 netns "$ns"
    ip -n "$NS_BR" link set "v$i" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    i=$((i + 1))
  done
  set +e
  trap - ERR
  for h in $(hosts); do
    wait_for 10 "$h's link" link_up "$(ns_of "$h")" ||
      { "$RIG" down "$D"; die "$h's link to the bridge did not come up in 10 s"; }
  done
  if [ $SLURM -eq 1 ]; then
    write_slurm_conf
    start_munge || { "$RIG" down "$D"; exit 1; }
    setsid "$RIG" exec "$D" login slurmctld -D -f "$D/etc/slurm.conf" > "$D/log/slurmctld.out" 2>&1 < /dev/null &
    CTLD_PID=$!
    for i in $(seq 1 "$K"); do
      setsid "$RIG" exec "$D" "node$i" slurmd -D -f "$D/etc/slurm.conf" -N "node$i" \
        > "$D/log/slurmd.node$i.out" 2>&1 < /dev/null &
    done
    if ! wait_for 60 "the nodes" nodes_idle; then
      echo "rig: the $K nodes did not become idle in 60 s; sinfo:" >&2
      "$RIG" exec "$D" login sinfo -N -l >&2
      tail -n 5 "$D"/log/*.log "$D"/log/*.out >&2
      "$RIG" down "$D"; exit 1
    fi
  fi
  echo "rig: up in $D: login $RIG_NET.1, node1..node$K $RIG_NET.11..; namespaces ${ID}*$([ $SLURM -eq 1 ] && echo ", slurm cluster rig$ID")"
}

cmd_down() {
  need_root
  [ $# -ge 1 ] || die "usage: rig.sh down DIR"
  load "$1"
  local nss=("$NS_LOGIN") i ns pids
  for i in $(seq 1 "$K"); do nss+=("${ID}n$i"); done
  nss+=("$NS_BR")
  # every process in the rig's namespaces (daemons, job steps, ranks): TERM, then KILL
  for sig in TERM KILL; do
    pids=""
    for ns in "${nss[@]}"; do
      [ -e "/run/netns/$ns" ] && pids+=" $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    done
    [ -z "${pids// /}" ] && break
    # shellcheck disable=SC2086
    kill -$sig $pids 2>/dev/null
    for _ in $(seq 1 25); do
      local alive=0 p
      for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ $alive -eq 0 ] && break
      sleep 0.2
    done
  done
  if [ -f "$D/munge/munged.pid" ]; then
    local mp; mp=$(cat "$D/munge/munged.pid")
    # only if that pid is still this rig's munged
    if tr '\0' ' ' < "/proc/$mp/cmdline" 2>/dev/null | grep -qF -- "$D/munge/munge.key"; then
      kill "$mp"; for _ in $(seq 1 25); do kill -0 "$mp" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$mp" 2>/dev/null && kill -KILL "$mp"
    fi
  fi
  for ns in "${nss[@]}"; do
    [ -e "/run/netns/$ns" ] && { ip netns del "$ns" || echo "rig: could not delete namespace $ns" >&2; }
  done
  if [ "${RIG_KEEP:-0}" = 1 ]; then rm -f "$D/rig.env"; else rm -rf "$D"; fi
  echo "rig: down ($ID)"
}

cmd_link() { # up|down DIR HOST
  need_root
  local state=$1; load "$2"
  local ns; ns=$(ns_of "$3") || exit 1
  # the host's bridge port: the veth whose peer is the host's eth0 (ifindex pairing)
  local peer; peer=$(ip -n "$ns" -o link show eth0 | sed -nE 's/.*eth0@if([0-9]+).*/\1/p')
  local port; port=$(ip -n "$NS_BR" -o link show | awk -F': ' -v i="$peer" '$1 == i {print $2}' | cut -d@ -f1)
  [ -n "$port" ] || die "no bridge port found for $3"
  ip -n "$NS_BR" link set "$port" "$state"
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  exec) shift; [ $# -ge 3 ] || die "usage: rig.sh exec DIR HOST CMD..."; load "$1"; h=$2; shift 2; in_host "$h" "$@" ;;
  cut) shift; cmd_link down "$@" ;;
  heal) shift; cmd_link up "$@" ;;
  *) sed -n '2,24p' "$RIG" >&2; exit 2 ;;
esac
