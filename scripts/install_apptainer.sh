#!/usr/bin/env bash
# Install Apptainer (and what it needs to run SIF images without privileges) on Debian 12 or 13.
#
# Debian 12 has no apptainer package; Debian unstable (sid) has one. We add sid as a source pinned below the
# default priority (so nothing else ever moves to sid by itself), install apptainer from it, and take
# squashfs-tools, squashfuse, fuse3 and busybox-static (for the offline test image) from the base suite.
# Idempotent: does nothing when everything is already there. Needs root; every apt call takes a shared lock so
# that several install scripts can run at the same moment.
set -euo pipefail

need_binaries=(apptainer mksquashfs squashfuse fusermount3)
missing=0
for binary in "${need_binaries[@]}"; do
    command -v "$binary" >/dev/null 2>&1 || missing=1
done
# The test image needs a static busybox (a dynamic one cannot run in an image without a libc).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" || missing=1
if [ "$missing" -eq 0 ]; then
    echo "install_apptainer: apptainer $(apptainer --version | awk '{print $NF}') already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_apptainer: must run as root to install apptainer (missing: one of ${need_binaries[*]} busybox-static)" >&2
    exit 1
fi

apt_locked() {
    flock /var/lock/tqhpc-apt.lock env DEBIAN_FRONTEND=noninteractive "$@"
}

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
case "$codename" in
    bookworm | trixie) ;;
    *) echo "install_apptainer: untested Debian release '${codename}'; trying the same recipe" >&2 ;;
esac

sid_source=/etc/apt/sources.list.d/tqhpc-sid.sources
if [ ! -f "$sid_source" ]; then
    cat > "$sid_source" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
fi
pin=/etc/apt/preferences.d/tqhpc-sid-pin
if [ ! -f "$pin" ]; then
    cat > "$pin" <<PIN
# tqhpc: sid is only a source for apptainer; never let it replace packages of the base release by itself.
Package: *
Pin: release n=sid
Pin-Priority: 100
PIN
fi

apt_locked apt-get update -qq
apt_locked apt-get install -y -qq --no-install-recommends squashfs-tools squashfuse fuse3 busybox-static
if ! command -v apptainer >/dev/null 2>&1; then
    apt_locked apt-get install -y -qq --no-install-recommends -t sid apptainer
fi
apptainer --version
