#!/usr/bin/env bash
# Prints a directory whose bin/ holds qemu-io, qemu-img and qemu-nbd that have the rbd block
# driver, and whose modules/ holds that driver (set QEMU_MODULE_DIR to it), for the tests
# that open rbd volumes with a real qemu. When the machine's qemu already has rbd, prints
# nothing. Otherwise Debian's qemu-utils and qemu-block-extra of one version (a module only
# loads into the qemu it was built with) are unpacked under target/qemu-rbd, once, without
# installing anything on the machine: its own qemu-utils may be a newer build than any
# qemu-block-extra apt offers.
#   scripts/qemu-rbd.sh [DIR]      default DIR: target/qemu-rbd
set -euo pipefail
if command -v qemu-img >/dev/null && qemu-img --help 2>/dev/null | grep -A3 '^Supported formats' | grep -qw rbd; then
  exit 0
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$root/target/qemu-rbd}"
if [ -x "$dir/bin/qemu-io" ] && [ -e "$dir/modules/block-rbd.so" ]; then
  echo "$dir"; exit 0
fi
mkdir -p "$dir/debs"
chmod 777 "$dir/debs"   # apt's download user writes there
ver=$(apt-cache policy qemu-block-extra | awk '/Candidate:/ {print $2}')
if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
  apt-get update -qq >/dev/null
  ver=$(apt-cache policy qemu-block-extra | awk '/Candidate:/ {print $2}')
fi
[ -n "$ver" ] && [ "$ver" != "(none)" ] || { echo "qemu-rbd: apt offers no qemu-block-extra" >&2; exit 1; }
( cd "$dir/debs" && apt-get download -qq "qemu-utils=$ver" "qemu-block-extra=$ver" 2>/dev/null )
rm -rf "$dir/root"
for d in "$dir"/debs/*.deb; do dpkg-deb -x "$d" "$dir/root"; done
mkdir -p "$dir/bin" "$dir/modules"
for b in qemu-io qemu-img qemu-nbd; do cp "$dir/root/usr/bin/$b" "$dir/bin/"; done
cp "$dir/root/usr/lib/x86_64-linux-gnu/qemu/block-rbd.so" "$dir/modules/"
QEMU_MODULE_DIR="$dir/modules" "$dir/bin/qemu-img" --help | grep -A3 '^Supported formats' | grep -qw rbd \
  || { echo "qemu-rbd: the unpacked qemu $ver does not load its rbd driver" >&2; exit 1; }
echo "$dir"
