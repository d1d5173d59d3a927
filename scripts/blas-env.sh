# Sourced by the other scripts (not run on its own).
# OpenBLAS 0.3.21 (Debian 12) does not recognise some newer CPUs (this
# machine's Xeon, family 6 model 207, among them) and falls back to its
# Prescott (SSE3) kernels, which run matrix products ~5x slower than its
# AVX-512 ones. When OPENBLAS_CORETYPE is unset and that fallback is what
# OpenBLAS would pick, choose the kernels the CPU's flags allow. A value the
# user set is always kept.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  seam_blas_core=$(OPENBLAS_VERBOSE=2 LD_PRELOAD=libblas.so.3 /bin/true 2>&1 | sed -n 's/^Core: //p' | head -n1 || true)
  if [ "$seam_blas_core" = "Prescott" ]; then
    seam_cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true) "
    case "$seam_cpu_flags" in
      *" avx512f "*) export OPENBLAS_CORETYPE=SkylakeX ;;
      *" avx2 "*) export OPENBLAS_CORETYPE=Haswell ;;
    esac
    if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
      echo "blas-env: OpenBLAS would use its Prescott kernels here; using OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE" >&2
    fi
  fi
  unset seam_blas_core seam_cpu_flags
fi
