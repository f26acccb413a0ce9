#!/usr/bin/env bash
# Installs stunnel as Debian bookworm packages it (the `stunnel4` package, pinned at the
# version below) as <cache>/stunnel-<version>-<hash>/stunnel (a wrapper that runs the
# unpacked binary with the unpacked libraries first on its library path) and prints that
# directory. The packages are fetched with `apt-get download` and unpacked with
# `dpkg-deb -x`, never installed: stunnel4's maintainer scripts would add a service user and
# an init script. Besides stunnel4 itself, `libwrap0` (TCP wrappers, which stunnel links
# and a bare system lacks) is fetched and unpacked beside it; stunnel links the system's
# OpenSSL 3 (`libssl3`) and its other libraries from the system, and the install fails,
# naming them, if one is missing. Needs apt and dpkg (a Debian-based machine) and the
# Debian archive (or apt's own cache).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version=3:5.68-2+deb12u1
# Debian package=version pairs unpacked into the tree, stunnel4 first.
packages=("stunnel4=$version" "libwrap0=7.6.q-32")

fetch() {
  local dl="$1" spec="$2"
  local package="${spec%%=*}" want="${spec#*=}"
  # Run as root, apt downloads "unsandboxed" (with a warning) when its _apt user cannot
  # write here; that is all the warning means.
  if ! (cd "$dl" && apt-get download -q "$spec" >&2); then
    echo "apt-get download $spec failed; refreshing apt's package lists once" >&2
    apt-get update -qq
    (cd "$dl" && apt-get download -q "$spec" >&2) || {
      echo "Debian's $package $want cannot be downloaded; apt offers:" >&2
      apt-cache policy "$package" >&2
      return 1
    }
  fi
  local deb
  deb="$(find "$dl" -name "${package}_*.deb" | head -1)"
  [ -n "$deb" ] || { echo "apt-get download left no ${package}_*.deb" >&2; return 1; }
  local got
  got="$(dpkg-deb -f "$deb" Version)"
  [ "$got" = "$want" ] || { echo "downloaded $package $got, expected $want" >&2; return 1; }
  echo "Debian $package $want ($(dpkg-deb -f "$deb" Architecture)), sha256 $(sha256sum "$deb" | cut -d' ' -f1)"
  dpkg-deb -x "$deb" "$dl/../deb"
}

build() {
  local out="$1"
  command -v apt-get >/dev/null || { echo "apt-get is not available (needed to fetch Debian's stunnel4)" >&2; return 1; }
  command -v dpkg-deb >/dev/null || { echo "dpkg-deb is not available (needed to unpack Debian's stunnel4)" >&2; return 1; }
  local dl="$out/.download"
  mkdir -p "$dl"
  local spec
  for spec in "${packages[@]}"; do
    fetch "$dl" "$spec" >>"$out/VERSION"
  done
  rm -rf "$dl"
  local libs="$out/deb/usr/lib/x86_64-linux-gnu"
  [ -d "$libs" ] || libs="$(dirname "$(find "$out/deb" -name 'libwrap.so.0' | head -1)")"
  # The libraries stunnel still cannot find (from the system) once ours are on the path.
  local missing
  missing="$(LD_LIBRARY_PATH="$libs" ldd "$out/deb/usr/bin/stunnel4" | grep 'not found' || true)"
  [ -z "$missing" ] || { echo "stunnel4 needs libraries this system lacks:" >&2; echo "$missing" >&2; return 1; }
  # A wrapper, so that callers run one path; `exec` keeps the PID stunnel's own.
  cat >"$out/stunnel" <<EOF
#!/bin/sh
# Debian's stunnel4, unpacked beside this script (see tests/peers/stunnel.sh).
here="\$(dirname "\$0")"
LD_LIBRARY_PATH="\$here/${libs#"$out/"}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$here/deb/usr/bin/stunnel4" "\$@"
EOF
  chmod +x "$out/stunnel"
  cat "$out/VERSION"
  # `-version` prints to stderr and exits 1 after listing the defaults.
  "$out/stunnel" -version 2>&1 | grep -E '^(stunnel|Compiled|Running)' | tee -a "$out/VERSION"
  grep -q '^stunnel 5\.68 ' "$out/VERSION" || { echo "the unpacked stunnel does not run" >&2; return 1; }
}

install_once "$(key "stunnel-${version#*:}" "$here/stunnel.sh" "$here/lib.sh")" build
