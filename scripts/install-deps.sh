#!/usr/bin/env bash
# Installs the Debian packages Pagoda builds and tests with, when any is missing.
# Idempotent and quick when everything is there. Uses sudo when not root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev grpc-proto
  libabsl-dev prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  libxxhash-dev nlohmann-json3-dev
)
# Extra packages other parts of the tree ask for (one per line, '#' comments allowed).
for extra in "$(dirname "$0")"/packages.d/*.txt; do
  [ -f "$extra" ] || continue
  while read -r pkg; do
    pkg=${pkg%%#*}
    [ -n "${pkg// /}" ] && packages+=("${pkg// /}")
  done < "$extra"
done

# The tokenizer parity test runs Hugging Face's reference through Node.js. Machines that already
# have node and npm (from any source) keep them; elsewhere Debian's nodejs and npm serve.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "Installing missing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
