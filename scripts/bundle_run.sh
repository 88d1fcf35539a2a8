#!/usr/bin/env bash
# scripts/bundle_run.sh: the one place that gives a bundled binary its
# library path. scripts/gpu_bundle.sh copies it into the bundle as `run`,
# with wrap/<name> -> ../run for each of bin/* and mpirun, so
#
#   BUNDLE/wrap/shardlm env                      (= BUNDLE/run shardlm env)
#   BUNDLE/wrap/mpirun -np 2 BUNDLE/bin/shardlm env
#   BUNDLE/run --exec CMD ARGS...                (any command, e.g. ldd, in the same environment)
#
# sets LD_LIBRARY_PATH (BUNDLE/lib, then $SHARDLM_CUDA_LIBS, the CUDA
# library folders scripts/gpu_run.sh found, then the caller's) and the
# OPAL_*/PMIX_* variables of the relocated Open MPI and PMIx for that one process and its
# children only: python, torch and the PyTorch peers that gpu_run.sh starts
# keep the target's own libstdc++, libssl, libz ... Ranks started by the
# wrapped mpirun inherit the environment, so they are named by their
# BUNDLE/bin path. BUNDLE_LD_DEBUG=<what> sets LD_DEBUG just before the
# exec (scripts/gpu_rehearse.sh traces which files are loaded), so the
# wrapper's own bash is not traced.
#
# Pure bash (no coreutils, grep or sed): it must run in gpu_rehearse.sh's
# mount namespace, where the system copies of every bundled library
# (PCRE2 among them, which grep and ls load) are hidden.
if [[ ${0%/*} == */wrap ]]; then
  B=${0%/wrap/*} prog=${0##*/}
else
  B=${0%/*} prog=${1:-}
  shift
fi
[[ $B == /* ]] || B=$PWD/$B
export LD_LIBRARY_PATH="$B/lib${SHARDLM_CUDA_LIBS:+:$SHARDLM_CUDA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OPAL_PREFIX="$B/ompi" OPAL_LIBDIR="$B/ompi/lib" OPAL_PKGLIBDIR="$B/ompi/lib/openmpi"
export OPAL_DATADIR="$B/ompi/share" OPAL_PKGDATADIR="$B/ompi/share/openmpi" OPAL_SYSCONFDIR="$B/ompi/etc"
export OMPI_MCA_mca_base_component_path="$B/ompi/lib/openmpi"
export PMIX_INSTALL_PREFIX="$B/pmix" PMIX_PREFIX="$B/pmix" PMIX_LIBDIR="$B/pmix/lib" PMIX_PKGLIBDIR="$B/pmix/lib/pmix"
export PMIX_DATADIR="$B/pmix/share" PMIX_PKGDATADIR="$B/pmix/share/pmix" PMIX_MCA_mca_base_component_path="$B/pmix/lib/pmix"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PATH="$B/ompi/bin:$PATH"
case $prog in
  --exec) cmd=("$@") ;;
  mpirun | mpiexec | orterun) cmd=("$B/ompi/bin/mpirun" "$@") ;;
  "" | */*) echo "bundle run: usage: run PROGRAM [ARGS] (PROGRAM in $B/bin, or mpirun) | run --exec CMD [ARGS]" >&2
    exit 2 ;;
  *) cmd=("$B/bin/$prog" "$@") ;;
esac
[[ -n ${BUNDLE_LD_DEBUG:-} ]] && export LD_DEBUG=$BUNDLE_LD_DEBUG
exec "${cmd[@]}"
