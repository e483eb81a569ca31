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

mapfile -t libraries < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')

# dpkg knows a library by the path its package installed, which may be a symlink's target or the
# /lib spelling of a /usr/lib path (merged /usr): ask for every spelling, in one dpkg-query call
# (each call reads the whole package database).
declare -A spellings=()
for library in "${libraries[@]}"; do
  for candidate in "$library" "$(readlink -f "$library")"; do
    spellings[$candidate]=1
    spellings[${candidate#/usr}]=1
    [[ $candidate == /usr/* ]] || spellings[/usr$candidate]=1
  done
done
declare -A owner_of=()
while IFS= read -r line; do
  [[ $line == diversion* ]] && continue
  owner_of[${line#*: }]=${line%%: *}
done < <(dpkg-query -S "${!spellings[@]}" 2>/dev/null || true)

status=0
declare -A packages=()
for library in "${libraries[@]}"; do
  owner=""
  real=$(readlink -f "$library")
  for candidate in "$library" "$real" "${library#/usr}" "${real#/usr}" "/usr$library" "/usr$real"; do
    owner=${owner_of[$candidate]:-}
    [ -n "$owner" ] && break
  done
  if [ -z "$owner" ]; then
    echo "runtime-packages.sh: no Debian package owns $library" >&2
    status=1
    continue
  fi
  # "pkg:arch" or "pkg1, pkg2" (a path shared by several packages): the first one.
  owner=${owner%%,*}
  packages[${owner%%:*}]=1
done

printf '%s\n' "${!packages[@]}" | sort
exit $status
