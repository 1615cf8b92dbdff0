#!/usr/bin/env bash
# Installs the Debian packages the build, the KVM lab and the tests need.
# Run as root (CI) or with sudo. Idempotent; apt caches the downloads.
set -euo pipefail

PACKAGES=(
  qemu-system-x86   # the KVM lab's L1 machine and the reference VMM in benchmarks
  busybox-static    # initramfs userland for the lab and the guest
  kmod              # depmod/modprobe: module dependency order for initramfs builds
  cpio
  zstd
  squashfs-tools    # the guest's read-only root filesystem
  mmdebstrap        # builds the guest rootfs from Debian packages
  chromium          # Playwright's browser for the UI tests
  ca-certificates
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: needs root to run apt-get (try: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
echo "install-deps: ${#PACKAGES[@]} Debian packages present"
