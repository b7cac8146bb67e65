#!/usr/bin/env bash
# Installs what ember's tests need on Debian 12, from apt, only what is missing.
#   scripts/install-deps.sh           everything the tests need (PostgreSQL, tmux, Ceph)
#   scripts/install-deps.sh --build   only what building ember needs (librados/librbd headers)
set -euo pipefail
need=()
[ -e /usr/include/rados/librados.h ] || need+=(librados-dev)
[ -e /usr/include/rbd/librbd.h ] || need+=(librbd-dev)
if [ "${1:-}" != --build ]; then
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v tmux >/dev/null || need+=(tmux)
command -v python3 >/dev/null || need+=(python3)
# A throwaway Ceph cluster for the rbd tests (scripts/ceph.sh), and the headers ember links against.
command -v ceph-mon >/dev/null || need+=(ceph-mon)
command -v ceph-osd >/dev/null || need+=(ceph-osd)
command -v ceph-mgr >/dev/null || need+=(ceph-mgr)
command -v rbd >/dev/null || need+=(ceph-common)
# librbd from Python: the tests' guest writes into rbd images in place (tests/common/rbd_client.py).
/usr/bin/python3 -c 'import rbd' 2>/dev/null || need+=(python3-rbd)
command -v uuidgen >/dev/null || need+=(uuid-runtime)
# The shells whose completion tests/completions.rs drives.
command -v zsh >/dev/null || need+=(zsh)
command -v fish >/dev/null || need+=(fish)
# Real clients of attachments and exports (tests/attach.rs, tests/attach_rbd.rs): qemu-io and
# qemu-nbd, nbdinfo and nbdcopy, and libvirt's schema check (virt-xml-validate runs xmllint).
# qemu's rbd driver, when the machine's qemu lacks it, is unpacked by scripts/qemu-rbd.sh.
command -v qemu-io >/dev/null || need+=(qemu-utils)
command -v nbdcopy >/dev/null || need+=(libnbd-bin)
command -v virt-xml-validate >/dev/null || need+=(libvirt-clients)
command -v xmllint >/dev/null || need+=(libxml2-utils)
# promtool reads the scrape and the alert rules (tests/metrics.rs); only the tool is wanted.
command -v promtool >/dev/null || need+=(prometheus)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  # No package may start a server while it installs (prometheus would listen on every
  # interface): policy-rc.d says no for the install's length; the tests start what they need.
  guard=/usr/sbin/policy-rc.d
  if [ ! -e "$guard" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_ tee "$guard" >/dev/null
    $sudo_ chmod +x "$guard"
    trap '$sudo_ rm -f "$guard"' EXIT
  fi
  $sudo_ apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if printf '%s\n' "${need[@]}" | grep -qx prometheus && command -v systemctl >/dev/null; then
    $sudo_ systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null 2>&1 || true
