#!/bin/sh
# cluster/local/rsh_agent.sh: Open MPI's remote shell for the rig's hosts.
# mpirun --mca plm_rsh_agent cluster/local/rsh_agent.sh --hostfile $SHARDLM_RIG/hostfile ...
# Open MPI calls it as `agent HOST COMMAND...` (like ssh); it runs COMMAND
# with /bin/sh on HOST: in that host's namespaces, through rig.sh exec.
# SHARDLM_RIG names the rig's folder (rig.sh exec sets it for what it runs).
[ -n "${SHARDLM_RIG:-}" ] || { echo "rsh_agent: SHARDLM_RIG (the rig folder) is not set" >&2; exit 255; }
host=$1
shift
exec "$(dirname "$0")/rig.sh" exec "$SHARDLM_RIG" "$host" /bin/sh -c "$*"
