# shellcheck shell=bash
# Sourced by dist/build: the pinned build tools, installed once into a cache directory
# (a fresh machine installs them; later runs find them there).
#
# cargo-zigbuild links wxauth with zig against glibc 2.17's symbol versions, so that the
# binary runs on CentOS 7 and every newer glibc. Both come from PyPI as wheels: the zig
# toolchain (ziglang) and cargo-zigbuild's own binary. docs/install.md says why this and
# not a static binary.

ZIGLANG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.1

dist_cache="${WXAUTH_DIST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wxauth/dist}"
dist_tools="$dist_cache/tools-zig$ZIGLANG_VERSION-zigbuild$CARGO_ZIGBUILD_VERSION"

if [ ! -x "$dist_tools/bin/cargo-zigbuild" ] || [ ! -f "$dist_tools/.complete" ]; then
  echo "installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION into $dist_tools"
  rm -rf "$dist_tools"
  mkdir -p "$dist_cache"
  python3 -m venv "$dist_tools"
  "$dist_tools/bin/pip" install --quiet --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  touch "$dist_tools/.complete"
fi
# cargo-zigbuild finds zig as `python3 -m ziglang`, the venv's python3 first on PATH.
export PATH="$dist_tools/bin:$PATH"
