#!/usr/bin/env bash
# Prints, one per line, the Debian packages that provide the shared libraries a binary loads
# (from ldd and dpkg -S). The images' build stage writes this list next to pagodad and their
# runtime stage installs exactly it, so the runtime image follows the build's dependencies
# without a hand-kept list. Libraries no package owns (e.g. a toolkit unpacked by hand) are
# reported on stderr and make the script fail: the runtime image would lack them.
#
#   deploy/docker/runtime-packages.sh build/server/pagodad > runtime-packages.txt
set -euo pipefail
binary=${1:?usage: runtime-packages.sh BINARY}

status=0
declare -A packages=()
while read -r library; do
  owner=""
  # dpkg knows a library by the path its package installed, which may be a symlink's target or
  # the /lib spelling of a /usr/lib path (merged /usr): try each.
  for candidate in "$library" "$(readlink -f "$library")" "${library#/usr}" "/usr$library"; do
    owner=$(dpkg-query -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1) || true
    [ -n "$owner" ] && break
  done
  if [ -z "$owner" ]; then
    echo "runtime-packages.sh: no Debian package owns $library" >&2
    status=1
    continue
  fi
  packages[$owner]=1
done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')

printf '%s\n' "${!packages[@]}" | sort
exit $status
