# shellcheck shell=bash
# Sourced by dist/test-old-glibc and dist/test-image: an older Debian's root filesystem,
# made by debootstrap once per machine and kept in a cache directory keyed by suite.
#
# The suite is bullseye (Debian 11, glibc 2.31), the oldest the Debian mirror still
# serves (buster and older are only on the archive); WXAUTH_DIST_SUITE picks another.
# It carries libnss-myhostname, an NSS module that glibc loads at run time, and the CA
# certificates, which the image's base needs.

suite="${WXAUTH_DIST_SUITE:-bullseye}"
dist_cache="${WXAUTH_DIST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wxauth/dist}"
rootfs="$dist_cache/rootfs-$suite"

# Installs the Debian packages, given as COMMAND:PACKAGE, whose command is missing.
need() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_rootfs() {
  need debootstrap:debootstrap ip:iproute2 curl:curl
  [ -f "$rootfs/.complete" ] && return 0
  # The Debian mirror this machine's apt uses, else debootstrap's default.
  local mirror
  mirror=$(grep -hsE '^(URIs:|deb ).*/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
    /etc/apt/sources.list.d/*.list /etc/apt/sources.list |
    grep -v security | sed -E 's/^URIs: *//; s/^deb +(\[[^]]*\] +)?//' | awk '{ print $1; exit }' ||
    true)
  echo "== debootstrap $suite into $rootfs (once per machine)"
  rm -rf "$rootfs.partial"
  mkdir -p "$dist_cache"
  if ! debootstrap --variant=minbase --include=libnss-myhostname,ca-certificates \
    "$suite" "$rootfs.partial" ${mirror:+"$mirror"} > "$dist_cache/debootstrap-$suite.log" 2>&1; then
    tail -20 "$dist_cache/debootstrap-$suite.log" >&2
    return 1
  fi
  # The downloaded packages and package lists are not needed again.
  rm -rf "$rootfs.partial"/var/cache/apt/archives/*.deb "$rootfs.partial"/var/lib/apt/lists/*
  # minbase leaves no /etc/hosts; the tests mount their own over this one.
  touch "$rootfs.partial/etc/hosts"
  touch "$rootfs.partial/.complete"
  mv "$rootfs.partial" "$rootfs"
}
