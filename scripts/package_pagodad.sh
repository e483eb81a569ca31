#!/usr/bin/env bash
# Packs the built pagodad and pagoda-cli (and pagoda-bench, the load generator, when it is built),
# with the shared libraries they need that another machine
# may lack (gRPC, protobuf, Abseil, prometheus-cpp, OpenSSL, c-ares, re2, ICU, ...) and the
# built-in model, into one directory that runs on a machine without our Debian packages: a GPU
# machine with a CUDA 13 driver, for instance.
#
#   scripts/package_pagodad.sh [BUILD_DIR] [OUT_DIR]
#       BUILD_DIR defaults to build, OUT_DIR to BUILD_DIR/pagoda-package.
#   OUT_DIR/bin/pagodad.sh [FLAGS]      (on the other machine; the built-in model without --model)
#   OUT_DIR/bin/pagoda-cli.sh COMMAND ...
#
# Layout: bin/ the wrappers (they set LD_LIBRARY_PATH and exec), libexec/ the binaries (debug info
# stripped), lib/ the libraries, share/pagoda/models/pagoda-kjv the built-in model, README.txt.
#
# Not packed: glibc (libc, libm, libpthread, libdl, librt, the loader: it comes with the kernel
# interface and cannot be swapped under a process), libstdc++ and libgcc_s, whose minimum versions
# README.txt states (built on Debian 12: glibc >= 2.34 and GLIBCXX_3.4.30, e.g. Ubuntu 22.04 or
# newer); the CUDA driver; and cuBLASLt (500 MB), which a CUDA build of pagodad links and
# pagodad.sh finds at run time in a CUDA 13 toolkit or a pip "nvidia" wheel
# (scripts/find_cublaslt.sh). Packing libstdc++ would not widen the reach: Debian 12's needs
# glibc 2.36 (arc4random), which would shut out Ubuntu 22.04 (glibc 2.35, GLIBCXX_3.4.30).
set -euo pipefail

SOURCE_DIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${1:-build}
OUT_DIR=${2:-$BUILD_DIR/pagoda-package}
BINARIES=(pagodad pagoda-cli)
# Where each is built, under BUILD_DIR.
declare -A BUILT_AT=([pagodad]=server [pagoda-cli]=server [pagoda-bench]=bench)
MODEL_DIR=$SOURCE_DIR/models/pagoda-kjv
MARKER=.pagoda-package  # marks OUT_DIR as ours, so that a rerun may delete it

fail() {
  echo "package_pagodad.sh: $*" >&2
  exit 1
}

for tool in ldd strip objdump; do
  command -v "$tool" >/dev/null || fail "needs $tool (Debian: libc-bin, binutils)"
done
for name in "${BINARIES[@]}"; do
  [[ -x $BUILD_DIR/server/$name ]] ||
    fail "missing $BUILD_DIR/server/$name: build it first (ninja -C $BUILD_DIR pagodad pagoda-cli)"
done
[[ -x $BUILD_DIR/bench/pagoda-bench ]] && BINARIES+=(pagoda-bench)
[[ -f $MODEL_DIR/config.json ]] || fail "missing the built-in model: no $MODEL_DIR/config.json"
if [[ -e $OUT_DIR && ! -e $OUT_DIR/$MARKER && -n $(ls -A "$OUT_DIR") ]]; then
  fail "$OUT_DIR exists, is not empty and is not a package this script made: not deleting it"
fi

rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR/bin" "$OUT_DIR/libexec" "$OUT_DIR/lib" "$OUT_DIR/share/pagoda/models"
touch "$OUT_DIR/$MARKER"

needs_cublaslt=0
for name in "${BINARIES[@]}"; do
  cp "$BUILD_DIR/${BUILT_AT[$name]}/$name" "$OUT_DIR/libexec/"
  strip --strip-debug "$OUT_DIR/libexec/$name"
  # ldd lists the whole dependency closure. Each line is "SONAME => PATH (ADDRESS)",
  # "SONAME => not found", or one without "=>" (the vDSO, the loader).
  while read -r soname arrow path _; do
    [[ $arrow == "=>" ]] || continue
    case "$soname" in
      libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | libstdc++.so* | \
        libgcc_s.so* | libcuda.so*) ;;
      libcublas*) needs_cublaslt=1 ;;
      *)
        [[ $path == /* ]] || fail "$name needs $soname, which ldd does not find here"
        [[ -e $OUT_DIR/lib/$soname ]] || cp -L "$path" "$OUT_DIR/lib/$soname"
        ;;
    esac
  done < <(ldd "$BUILD_DIR/${BUILT_AT[$name]}/$name")
done

cp -R "$MODEL_DIR" "$OUT_DIR/share/pagoda/models/"
cp "$SOURCE_DIR/scripts/find_cublaslt.sh" "$OUT_DIR/libexec/"

# The wrappers find the package from their own path (through symlinks), so it may be moved.
cat > "$OUT_DIR/bin/pagodad.sh" <<'WRAPPER'
#!/usr/bin/env bash
# pagodad from this package (see ../README.txt): the packed libraries first, cuBLASLt from this
# machine when the build needs it, and the packed built-in model unless a --model flag is given.
set -euo pipefail
DIR=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
NEEDS_CUBLASLT=@NEEDS_CUBLASLT@  # set by package_pagodad.sh: does this pagodad link cuBLASLt?
CUBLASLT_DIR=""
if ((NEEDS_CUBLASLT)); then
  source "$DIR/libexec/find_cublaslt.sh"
  [[ -n $CUBLASLT_DIR ]] || echo "pagodad.sh: libcublasLt.so.13 not found in a CUDA 13 toolkit" \
    "(CUDA_HOME) or a pip nvidia wheel of python3; set CUDA_HOME or LD_LIBRARY_PATH" >&2
fi
export LD_LIBRARY_PATH="$DIR/lib${CUBLASLT_DIR:+:$CUBLASLT_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# pagodad takes --model VALUE and --model=VALUE. The default it was compiled with is a path on
# the build machine.
model=(--model "$DIR/share/pagoda/models/pagoda-kjv")
for arg in "$@"; do
  case "$arg" in --model | --model=*) model=() ;; esac
done
exec "$DIR/libexec/pagodad" "${model[@]}" "$@"
WRAPPER
sed -i "s/@NEEDS_CUBLASLT@/$needs_cublaslt/" "$OUT_DIR/bin/pagodad.sh"

# The clients' wrappers: the packed libraries, then the binary.
for name in "${BINARIES[@]:1}"; do
  cat > "$OUT_DIR/bin/$name.sh" <<WRAPPER
#!/usr/bin/env bash
# $name from this package (see ../README.txt), with the packed libraries.
set -euo pipefail
DIR=\$(cd "\$(dirname "\$(readlink -f "\$0")")/.." && pwd)
export LD_LIBRARY_PATH="\$DIR/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "\$DIR/libexec/$name" "\$@"
WRAPPER
done
chmod +x "$OUT_DIR"/bin/*.sh

# The newest symbol versions anything packed asks of what is not packed.
newest_version() {
  objdump -T "${BINARIES[@]/#/$OUT_DIR/libexec/}" "$OUT_DIR"/lib/*.so* |
    grep -o "\b$1_[0-9][0-9.]*" | sort -u -V | tail -n 1
}
requirements="glibc >= $(newest_version GLIBC | cut -d_ -f2); libstdc++ with \
$(newest_version GLIBCXX) and $(newest_version CXXABI); libgcc_s with $(newest_version GCC)"
if ((needs_cublaslt)); then
  cublaslt_line="This pagodad is a CUDA build: it links cuBLASLt (libcublasLt.so.13), which is not
packed. bin/pagodad.sh looks for it in \$CUDA_HOME/lib64, /usr/local/cuda*/lib64, the system's
library directory and the pip \"nvidia\" wheels of the python3 on PATH (PyTorch's wheels carry
it); set CUDA_HOME or LD_LIBRARY_PATH when it is elsewhere."
else
  cublaslt_line="This pagodad is a CPU-only build: it needs no CUDA library."
fi
commit=$(git -C "$SOURCE_DIR" describe --always --dirty 2>/dev/null || echo unknown)
# shellcheck source=/dev/null
built_on=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}")
cat > "$OUT_DIR/README.txt" <<README
Pagoda: pagodad and pagoda-cli with the shared libraries they need and the built-in model, made by
scripts/package_pagodad.sh from source tree $commit on ${built_on:-Linux}.

  bin/pagodad.sh [FLAGS]            the daemon; without --model it serves the built-in model
                                    share/pagoda/models/pagoda-kjv. bin/pagodad.sh --help
  bin/pagoda-cli.sh COMMAND ...     the client, e.g.
                                    bin/pagoda-cli.sh generate "In the beginning" --max-tokens 32
  bin/pagoda-bench.sh [FLAGS]       the load generator, where it was built: bin/pagoda-bench.sh --help

Run the wrappers in bin/, not libexec/: they put lib/ on LD_LIBRARY_PATH. They may be symlinked
elsewhere and the directory may be moved.

The machine it runs on needs x86-64 Linux and these libraries, which are not packed (check with
ldd --version; strings /usr/lib/x86_64-linux-gnu/libstdc++.so.6 | grep GLIBCXX_):
  $requirements
Every other library is in lib/.

$cublaslt_line
README
du -sh "$OUT_DIR"
