#!/usr/bin/env bash
# scripts/gpu_rehearse.sh on a bundle made from this build by
# scripts/gpu_bundle.sh's own logic (PREBUILT=1: no cmake, the binaries
# already built; in the CPU build that is shardlm alone, since the CUDA
# bundle takes many minutes to build here): unpacked into a mount namespace
# with the system's Open MPI, PMIx, HDF5, hwloc plugins and every bundled
# library hidden, every bundled file resolves, shardlm env and one CPU
# training step run as a singleton and under the bundle's mpirun -np 2, and
# nothing is loaded from outside the bundle but glibc/CUDA. About a minute.
# Skips (77) without root or mount namespaces, and for a sanitizer build
# (the bundle ships release binaries).
source "$(dirname "$0")/lib.sh"
if ldd "$SHARDLM" | grep -q 'libasan\|libubsan'; then
  echo "skipped: $SHARDLM is a sanitizer build; the bundle ships release binaries"
  exit 77
fi
bash "$SRC/scripts/gpu_rehearse.sh" --from-build "$(dirname "$SHARDLM")"
