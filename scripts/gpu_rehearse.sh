#!/usr/bin/env bash
# scripts/gpu_rehearse.sh: rehearse the GPU bundle's first minute here, on a
# machine without a GPU, so that the lent machine's time is not spent on a
# missing library. The bundle is unpacked into a mount namespace in which
# the system copies of Open MPI (libraries, plugins, help files, mpirun),
# PMIx, HDF5 and of every library the bundle carries are hidden: folders
# under a bare tmpfs, single files under an empty file (a fallback to one
# fails loudly: "file too short"). There it checks
#   1. every bundled file (bin/*, ompi/bin/*, ompi/lib/openmpi/*.so,
#      pmix/lib/pmix/*.so, lib/*)
#      resolves all its libraries (the dynamic loader's --list, as ldd), each
#      from the bundle or from what stays on the target (glibc, CUDA);
#   2. `shardlm env` as an MPI singleton and under the bundle's `mpirun -np 2`
#      (exit 0, and no "couldn't open the help file": a piece of Open MPI or
#      PMIx the bundle lacks);
#   3. one CPU training step (`shardlm bench`, a small Llama) as a singleton
#      and under `mpirun -np 2` (FSDP over two ranks);
#   4. every library those runs loaded, dlopen'ed MPI plugins included
#      (LD_DEBUG, read after the namespace is gone), came from the bundle or
#      from glibc/CUDA.
# Everything runs through the bundle's wrapper (run, wrap/<name>:
# scripts/bundle_run.sh), the one gpu_run.sh uses on the GPU machine.
#
#   bash scripts/gpu_rehearse.sh [--bundle FILE.tar.xz]   (default bundle/shardlm-gpu.tar.xz)
#   bash scripts/gpu_rehearse.sh --from-build DIR         (bundle DIR's binaries first, e.g. build/)
#   options: --keep (keep the work folder and print it)
#
# --from-build runs scripts/gpu_bundle.sh with PREBUILT=1 BUILD=DIR (the same
# collection logic; XZ_OPT=-0 unless set) into the work folder: with the CPU
# build that is a bundle of shardlm alone, which is what the ctest test
# (tests/integration/test_gpu_rehearse.sh) rehearses, since building the
# CUDA bundle takes many minutes here. The CUDA bundle itself: bash
# scripts/gpu_bundle.sh && bash scripts/gpu_rehearse.sh.
# Needs root (unshare -m, mount) and exits 77 (skipped) without it. Exit
# code 0 when every check passed, 1 otherwise (each failure printed as FAIL),
# 2 for a usage error or no bundle.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE_FILE=$SRC/bundle/shardlm-gpu.tar.xz FROM_BUILD="" KEEP=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --bundle) BUNDLE_FILE=$2; shift 2 ;;
    --from-build) FROM_BUILD=$(cd "$2" && pwd) || exit 2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu_rehearse.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $(id -u) != 0 ]] || ! unshare -m --propagation private true 2>/dev/null; then
  echo "skipped: needs root and mount namespaces (unshare -m) to hide the system libraries"
  exit 77
fi
T0=$(date +%s)
W=$(mktemp -d /tmp/shardlm_rehearse.XXXXXX)
[[ $KEEP == 1 ]] && echo "work folder: $W" || trap 'rm -rf "$W"' EXIT
if [[ -n $FROM_BUILD ]]; then
  echo "== bundle from $FROM_BUILD (PREBUILT=1 scripts/gpu_bundle.sh)"
  PREBUILT=1 BUILD=$FROM_BUILD XZ_OPT=${XZ_OPT:--0} bash "$SRC/scripts/gpu_bundle.sh" "$W/made" > "$W/bundle.log" 2>&1 ||
    { cat "$W/bundle.log"; echo "FAIL: gpu_bundle.sh"; exit 1; }
  BUNDLE_FILE=$W/made/shardlm-gpu.tar.xz
fi
[[ -f $BUNDLE_FILE ]] || { echo "gpu_rehearse.sh: no bundle $BUNDLE_FILE (make one: bash scripts/gpu_bundle.sh)" >&2; exit 2; }
# Unpacked out here: tar and xz load libraries that are hidden in there.
B=$W/b
mkdir -p "$B" "$W/ld" "$W/run" && tar -C "$B" -xJf "$BUNDLE_FILE" || { echo "FAIL: cannot unpack $BUNDLE_FILE"; exit 1; }
[[ -x $B/run && -x $B/bin/shardlm ]] || { echo "FAIL: $BUNDLE_FILE has no run wrapper or bin/shardlm"; exit 1; }
echo "== bundle $BUNDLE_FILE ($(du -h "$BUNDLE_FILE" | cut -f1) packed, $(du -sh "$B" | cut -f1) unpacked): $(head -1 "$B/MANIFEST.txt")"

# What to hide. Folders: Open MPI's, PMIx's, HDF5's, and the plugin folders
# of bundled libraries (hwloc's, UCX's), wherever they exist: the bundle
# carries neither plugin set (hwloc's pull in libxml2, ICU, X11, OpenCL and
# libstdc++), so on the target they are absent and hwloc and UCX run without. Files: the system copy of every library in lib/
# (each name the loader could find, resolved to the file it points to) and
# the system's mpirun/orterun/orted.
MA=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
HIDE_DIRS=()
for d in /usr/lib/$MA/openmpi /usr/lib/$MA/pmix /usr/lib/$MA/pmix2 /usr/lib/$MA/hdf5 /usr/lib/$MA/ucx /usr/lib/$MA/hwloc \
  /usr/lib/$MA/prrte /usr/lib64/openmpi /usr/share/openmpi /usr/share/pmix /usr/share/prrte /etc/openmpi /etc/pmix; do
  [[ -d $d && ! -L $d ]] && HIDE_DIRS+=("$d")
done
declare -A SEEN=()
HIDE_FILES=()
hide_file() { # the file behind $1, unless a hidden folder covers it
  local f d
  f=$(readlink -f "$1") || return 0
  [[ -f $f && -z ${SEEN[$f]:-} ]] || return 0
  for d in "${HIDE_DIRS[@]}"; do [[ $f == "$d"/* ]] && return 0; done
  SEEN[$f]=1 HIDE_FILES+=("$f")
}
for l in "$B"/lib/*; do
  n=${l##*/}
  for d in /usr/lib/$MA /lib/$MA /usr/lib /lib /usr/lib64 /lib64 /usr/local/lib; do
    [[ -e $d/$n ]] && hide_file "$d/$n"
  done
  for p in $(ldconfig -p | awk -v n="$n" '$1 == n {print $NF}'); do hide_file "$p"; done
done
SYS_MPIRUN=""
for t in mpirun mpiexec orterun orted; do
  p=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin type -P $t) || continue
  hide_file "$p"; [[ $t == mpirun ]] && SYS_MPIRUN=$p
done
: > "$W/empty"
LOADER=$(readelf -l "$B/bin/shardlm" | sed -n 's/.*interpreter: \(.*\)]/\1/p')
# CUDA's libraries stay on the target: the toolkit's folders, as gpu_run.sh finds them
CUDA_LIBS=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -e $d/libcublasLt.so.13 ]] && CUDA_LIBS="$CUDA_LIBS${CUDA_LIBS:+:}$d"
done
# What may come from outside the bundle: glibc and the loader, the driver
# and CUDA's libraries (the target's), and the vDSO.
ALLOWED='^(linux-vdso|ld-linux|libc\.so|libm\.so|libmvec|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libanl\.so|libnss_|libcuda\.so|libcudart|libcublas|libnccl|libnvidia|libnvJitLink|libnvrtc)'
n_libs=$(ls "$B"/lib | wc -l)
echo "== hidden: ${#HIDE_DIRS[@]} folders (${HIDE_DIRS[*]}) and ${#HIDE_FILES[@]} files (the system's copies of the bundle's $n_libs libraries, mpirun, orted)"

# Runs inside the namespace: bash builtins, mount and the bundle only (grep,
# sed, ls load PCRE2, hidden here). Writes its verdicts to stdout and the
# loader's and the runs' outputs under $W; returns the number of failures.
inner() {
  local f d rc out fails=0 n_ok=0
  shopt -s nullglob dotglob
  # mount itself loads libraries hidden on the way (libselinux -> PCRE2):
  # it takes them from the bundle, the same files.
  for f in "${HIDE_FILES[@]}"; do
    LD_LIBRARY_PATH=$B/lib mount --bind "$W/empty" "$f" || { echo "FAIL: cannot hide $f"; ((fails++)); }
  done
  for d in "${HIDE_DIRS[@]}"; do
    LD_LIBRARY_PATH=$B/lib mount -t tmpfs -o size=64k,mode=755 rehearse-hidden "$d" ||
      { echo "FAIL: cannot hide $d"; ((fails++)); }
  done
  for f in "${HIDE_FILES[@]}"; do [[ -s $f ]] && { echo "FAIL: $f still readable"; ((fails++)); }; done
  for d in "${HIDE_DIRS[@]}"; do out=("$d"/*); [[ ${#out[@]} -eq 0 ]] || { echo "FAIL: $d not empty"; ((fails++)); }; done
  # controls: what needs the system's copies fails here
  if [[ -n $SYS_MPIRUN ]]; then
    "$SYS_MPIRUN" --version > /dev/null 2>&1 && { echo "FAIL: the system's $SYS_MPIRUN still runs"; ((fails++)); }
  fi
  if [[ -n $FROM_BUILD ]]; then
    out=$("$FROM_BUILD/shardlm" env 2>&1) && { echo "FAIL: the unbundled $FROM_BUILD/shardlm still runs"; ((fails++)); } ||
      echo "control: the unbundled build's shardlm fails here: ${out%%$'\n'*}"
  fi
  # 1. every bundled file resolves every library it names
  export SHARDLM_CUDA_LIBS=$CUDA_LIBS
  for f in "$B"/bin/* "$B"/ompi/bin/* "$B"/ompi/lib/openmpi/*.so "$B"/pmix/lib/pmix/*.so "$B"/lib/*; do
    out=$("$B/run" --exec "$LOADER" --list "$f" 2>&1); rc=$?
    echo "$out" > "$W/ld/list.${f##*/}"
    if [[ $rc -ne 0 || $out == *"not found"* || $out == *"too short"* || $out == *rror* ]]; then
      echo "FAIL: ${f#"$B"/} does not resolve (rc $rc):"; echo "$out" | while read -r line; do
        [[ $line == *"not found"* || $line == *"too short"* || $line == *rror* ]] && echo "    $line"; done
      ((fails++))
    else ((n_ok++)); fi
  done
  echo "resolve: $n_ok files resolve every library"
  # 2, 3. the runs, each traced by the loader (LD_DEBUG=libs,files)
  local mpi=("$B/wrap/mpirun" -np 2 --oversubscribe --bind-to none --mca btl self,vader)
  local small=(--config "$SRC/configs/bench-cpu.json" --steps 1 --warmup 0 --no-repeat-check
    --set model.n_layer=2 --set model.d_model=128 --set model.n_head=4 --set model.n_kv_head=2
    --set model.d_ff=256 --set model.vocab_size=512 --set data.seq_len=64 --set train.micro_batch=2)
  run_one() { # NAME WANT CMD...: exit 0 and WANT in the output
    local name=$1 want=$2 t=$SECONDS; shift 2
    out=$(cd "$W/run" && BUNDLE_LD_DEBUG=libs,files LD_DEBUG_OUTPUT=$W/ld/trace.$name OMP_NUM_THREADS=1 \
      timeout 120 "$@" 2>&1); rc=$?
    echo "$out" > "$W/run/$name.log"
    if [[ $rc -ne 0 || $out != *"$want"* || $out == *"couldn't open the help file"* ]]; then
      echo "FAIL: $name: exit $rc$([[ $out != *"$want"* ]] && echo ", no '$want' in the output")$(
        [[ $out == *"couldn't open the help file"* ]] && echo ", a help file the bundle lacks"):"
      echo "$out" | while read -r line; do echo "    $line"; done
      ((fails++))
    else
      echo "ok $name ($((SECONDS - t)) s)"
    fi
  }
  run_one env_singleton "MPI: Open MPI" "$B/wrap/shardlm" env
  run_one env_np2 "world 2" "${mpi[@]}" "$B/bin/shardlm" env
  run_one step_singleton "median_step_s" "$B/wrap/shardlm" bench "${small[@]}"
  run_one step_np2 "median_step_s" "${mpi[@]}" "$B/bin/shardlm" bench "${small[@]}"
  return $fails
}

echo "== in a mount namespace (unshare -m): hide, resolve, run"
unshare -m --propagation private bash -c "$(declare -f inner); $(declare -p B W SRC FROM_BUILD SYS_MPIRUN \
  LOADER CUDA_LIBS HIDE_DIRS HIDE_FILES); inner"
fails=$?

# 4. which files the loader opened, read out here (grep works again): every
# "calling init" of the runs and every "name => path" of the --list output
# must be the bundle's or an allowed outside library.
BR=$(readlink -f "$B")
n_bundle=0 n_allowed=0 outside=()
while read -r p; do
  [[ -z $p ]] && continue
  r=$(readlink -f "$p" 2>/dev/null || echo "$p")
  if [[ $r == "$BR"/* ]]; then ((n_bundle++))
  elif [[ ${p##*/} =~ $ALLOWED ]]; then ((n_allowed++))
  else outside+=("$p"); fi
done < <({ grep -h 'calling init: ' "$W"/ld/trace.* 2>/dev/null | sed 's/.*calling init: //'
  cat "$W"/ld/list.* 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}'; } | sort -u)
traces=$(ls "$W"/ld/trace.* 2>/dev/null | wc -l)
if [[ $traces -eq 0 ]]; then
  echo "FAIL: no loader traces were written (LD_DEBUG_OUTPUT)"; ((fails++))
fi
if [[ ${#outside[@]} -gt 0 ]]; then
  echo "FAIL: loaded from outside the bundle (neither glibc nor CUDA):"; printf '    %s\n' "${outside[@]}"
  ((fails++))
fi
echo "loaded: $n_bundle distinct files from the bundle, $n_allowed from glibc/CUDA, ${#outside[@]} from elsewhere ($traces processes traced)"
echo "gpu_rehearse: $([[ $fails -eq 0 ]] && echo passed || echo "FAILED ($fails)") in $(( $(date +%s) - T0 )) s"
[[ $fails -eq 0 ]]
