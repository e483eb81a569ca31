# shellcheck shell=bash disable=SC2034  # CUBLASLT_DIR is what the sourcing script reads
# Finds cuBLASLt on a GPU machine. Sourced by bash, never run: the packages that
# kernels/cuda/package_gpu_tests.sh and scripts/package_pagodad.sh build carry a copy of this file
# and their runners source it, because cuBLASLt (500 MB) is not packed but found at run time.
#
# Sets CUBLASLT_DIR to the first directory holding libcublasLt.so.13, or to "" when none does.
# Looks in $CUDA_HOME, the usual CUDA 13 toolkit locations, the distribution's library directory,
# then the pip "nvidia" wheels (nvidia/cu13/lib, nvidia/cublas/lib, ...) of the python3 on PATH:
# PyTorch's, when it is that python3. Safe under `set -euo pipefail`; defines nothing else.
CUBLASLT_DIR=""
_pagoda_pip_dirs=()
mapfile -t _pagoda_pip_dirs < <(python3 -c 'import glob, site
for s in site.getsitepackages() + [site.getusersitepackages()]:
    print("\n".join(glob.glob(s + "/nvidia/*/lib")))' 2>/dev/null || true)
for _pagoda_dir in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 \
                   /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
                   /usr/lib/x86_64-linux-gnu "${_pagoda_pip_dirs[@]}"; do
  if [[ -n $_pagoda_dir && -e $_pagoda_dir/libcublasLt.so.13 ]]; then
    CUBLASLT_DIR=$_pagoda_dir
    break
  fi
done
unset _pagoda_pip_dirs _pagoda_dir
