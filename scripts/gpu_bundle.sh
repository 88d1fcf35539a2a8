#!/usr/bin/env bash
# scripts/gpu_bundle.sh: build the CUDA shardlm here and collect a
# self-contained bundle for a GPU machine without package access.
#
#   bash scripts/gpu_bundle.sh [DIR]   (default: bundle/, git-ignored) -> DIR/shardlm-gpu.tar.xz
#
# The bundle holds: run and wrap/<binary> (scripts/bundle_run.sh: each
# bundled binary with the bundle's library path, set for it alone), bin/ (shardlm, test_cuda_ops, test_model_cuda, test_decode_cuda, test_nccl_comm,
# bench_cuda_attention, stripped), lib/ (every shared library those need that is not glibc or
# CUDA: Open MPI, HDF5, OpenBLAS, cJSON, zstd, PCRE2, utf8proc, xxHash,
# cmocka, gfortran/gomp), ompi/ (Open MPI's mpirun/orted, its plugin folder
# and help files, relocated through OPAL_PREFIX-style variables that
# scripts/gpu_run.sh sets), copies of the GPU run and step-benchmark scripts
# and the PyTorch peers (gpu_run.sh itself runs them from the checkout), and
# MANIFEST.txt. Size: check `du -sh bundle/` after changes; the device tool
# carries 64 MiB with the working tree (the archive was ~18 MB). CUDA's own libraries (libcudart, libcublasLt ~500 MB,
# libnccl) are NOT carried: the GPU machine has CUDA 13 (toolkit or the
# PyTorch wheels' nvidia-* packages); gpu_run.sh finds them there.
# libnccl.so.2 is 218 MB and does not compress (xz -6: 187 MB; its kernels
# are compressed fatbins), far over the device tool's 64 MiB carry, so it is
# opt-in: CARRY_NCCL=1 copies the build's libnccl.so.2 into lib/ (same NCCL
# as the headers) for targets reached another way; gpu_run.sh's ldd check
# reports it missing otherwise, and test_nccl_comm prints the NCCL version
# it runs with.
# Single-GPU runs need no mpirun: shardlm runs as an MPI singleton.
#
# Environment: BUILD (default build-cuda), JOBS (2), XZ_OPT (tar's xz
# options; default -6), and PREBUILT=1: run no cmake, bundle the binaries
# already in $BUILD (those of the list below that exist; shardlm at least).
# scripts/gpu_rehearse.sh uses PREBUILT=1 with the CPU build (build/) so that
# its ctest test rehearses the same collection logic in seconds instead of
# the CUDA build's many minutes.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$SRC/bundle}
OUT=$DEST/stage
BUILD=${BUILD:-$SRC/build-cuda}
BINS=(shardlm tests/test_cuda_ops tests/test_model_cuda tests/test_decode_cuda tests/test_nccl_comm
  benchmarks/bench_cuda_attention)
if [[ ${PREBUILT:-0} != 1 ]]; then
  cmake -S "$SRC" -B "$BUILD" -DSHARDLM_CUDA=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"${JOBS:-2}" --target "${BINS[@]##*/}"
fi
[[ -x $BUILD/shardlm ]] || { echo "gpu_bundle.sh: no $BUILD/shardlm (build it, or unset PREBUILT)" >&2; exit 2; }
rm -rf "$DEST"
mkdir -p "$OUT/bin" "$OUT/lib" "$OUT/ompi" "$OUT/scripts" "$OUT/peers"
for b in "${BINS[@]}"; do
  if [[ -x $BUILD/$b ]]; then cp "$BUILD/$b" "$OUT/bin/"
  elif [[ ${PREBUILT:-0} != 1 ]]; then echo "gpu_bundle.sh: $BUILD/$b was not built" >&2; exit 1; fi
done
strip --strip-unneeded "$OUT"/bin/*

# glibc, the dynamic loader and CUDA/driver libraries stay on the target.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libcuda\.so|libcudart\.so|libcublas|libnccl\.so|libnvidia)'
collect() { # ldd of $1, copy what is not skipped (dereferenced, stripped)
  ldd "$1" | awk '/=> \//{print $1" "$3}' | while read -r name path; do
    if [[ ! $name =~ $skip ]] && [[ ! -e $OUT/lib/$name ]]; then
      cp -L "$path" "$OUT/lib/$name"
      strip --strip-unneeded "$OUT/lib/$name" 2>/dev/null || true
    fi
  done
}
for b in "$OUT"/bin/*; do collect "$b"; done
if [[ ${CARRY_NCCL:-0} == 1 ]]; then
  nccl=$(ldd "$OUT/bin/shardlm" | awk '$1 ~ /^libnccl\.so/ {print $3; exit}')
  [[ -n $nccl ]] && cp -L "$nccl" "$OUT/lib/libnccl.so.2"
fi

# Open MPI runtime pieces (Debian layout), for multi-rank runs.
OMPI_LIBDIR=$(dirname "$(readlink -f "$(ldconfig -p | awk '/libmpi.so.40 /{print $NF; exit}')")")
OMPI_PKGLIB=$(ls -d "$OMPI_LIBDIR"/openmpi/lib/openmpi3 2>/dev/null || ls -d "$OMPI_LIBDIR"/openmpi 2>/dev/null || true)
mkdir -p "$OUT/ompi/bin" "$OUT/ompi/lib/openmpi" "$OUT/ompi/share/openmpi" "$OUT/ompi/etc"
for t in mpirun orterun orted; do
  p=$(command -v $t || true)
  [[ -n $p ]] && cp -L "$p" "$OUT/ompi/bin/$t" && collect "$OUT/ompi/bin/$t"
done
if [[ -n $OMPI_PKGLIB && -d $OMPI_PKGLIB ]]; then
  cp -L "$OMPI_PKGLIB"/mca_*.so "$OUT/ompi/lib/openmpi/" 2>/dev/null || true
  for m in "$OUT"/ompi/lib/openmpi/*.so; do collect "$m"; done
fi
# PMIx (Debian: its own prefix beside Open MPI's): plugins and help files,
# relocated through PMIX_PREFIX-style variables (scripts/bundle_run.sh);
# without them every rank prints "couldn't open the help file" for the
# missing pcompress plugin.
PMIX_ROOT=$(ls -d "$OMPI_LIBDIR"/pmix2 "$OMPI_LIBDIR"/pmix 2>/dev/null | head -1 || true)
if [[ -n $PMIX_ROOT && -d $PMIX_ROOT/lib/pmix ]]; then
  mkdir -p "$OUT/pmix/lib/pmix" "$OUT/pmix/share/pmix"
  cp -L "$PMIX_ROOT"/lib/pmix/*.so "$OUT/pmix/lib/pmix/" 2>/dev/null || true
  cp -r "$PMIX_ROOT"/share/pmix/. "$OUT/pmix/share/pmix/" 2>/dev/null || true
  for m in "$OUT"/pmix/lib/pmix/*.so; do collect "$m"; done
  strip --strip-unneeded "$OUT"/pmix/lib/pmix/*.so 2>/dev/null || true
fi
cp -r /usr/share/openmpi/. "$OUT/ompi/share/openmpi/" 2>/dev/null || true
cp -L /etc/openmpi/openmpi-mca-params.conf "$OUT/ompi/etc/" 2>/dev/null || true
strip --strip-unneeded "$OUT"/ompi/bin/* "$OUT"/ompi/lib/openmpi/*.so 2>/dev/null || true

cp "$SRC/scripts/gpu_run.sh" "$SRC/scripts/gpu_rehearse.sh" "$SRC/benchmarks/gpu_step.sh" "$OUT/scripts/"
# run: the library path for the bundled binaries alone (scripts/bundle_run.sh);
# wrap/<name> runs bin/<name> (or the bundled mpirun) through it.
cp "$SRC/scripts/bundle_run.sh" "$OUT/run"
chmod +x "$OUT/run"
mkdir -p "$OUT/wrap"
for b in "$OUT"/bin/* mpirun; do ln -s ../run "$OUT/wrap/${b##*/}"; done
cp "$SRC/benchmarks/peers/torch_gpu_bench.py" "$SRC/benchmarks/peers/torch_attention_bench.py" "$OUT/peers/"
{
  echo "shardlm GPU bundle, git $(git -C "$SRC" rev-parse --short=12 HEAD), built $(date -u +%FT%TZ) on $(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
  archs=$(grep CMAKE_CUDA_ARCHITECTURES: "$BUILD/CMakeCache.txt" | cut -d= -f2 || true)
  [[ -x $OUT/bin/test_cuda_ops ]] || archs="none (a CPU build: rehearsal only)"
  echo "CUDA archs: $archs"
  echo "needs on the target: glibc >= $(ldd --version | head -1 | awk '{print $NF}'), CUDA 13 runtime, cuBLASLt and NCCL (toolkit or pip nvidia-* wheels)"
  (cd "$OUT" && find . -type f | sort | xargs ls -l | awk '{print $5"\t"$9}')
  (cd "$OUT" && find wrap -type l | sort | sed 's|$| -> ../run|')
} > "$OUT/MANIFEST.txt"
# The unpacked bundle is ~90 MB (OpenBLAS alone 36 MB) and the device tool
# carries 64 MiB: ship one xz archive that gpu_run.sh unpacks on the target.
tar -C "$OUT" -cJf "$DEST/shardlm-gpu.tar.xz" .
cp "$OUT/MANIFEST.txt" "$DEST/"
rm -rf "$OUT"
du -sh "$DEST"/*
