#!/usr/bin/env bash
# Installs Prometheus and promtool as Debian bookworm packages them (the `prometheus` package,
# pinned at the version below) as <cache>/prometheus-<version>-<hash>/{prometheus,promtool}
# (links into the unpacked package, which stays beside them with its copyright file) and
# prints that directory. The package is fetched with `apt-get download` and unpacked with
# `dpkg-deb -x`, never installed: its maintainer scripts would add a service user and a
# systemd unit. Needs apt and dpkg (a Debian-based machine) and the Debian archive (or apt's
# own cache); the binaries are static Go programs and need nothing else.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

package=prometheus
version=2.42.0+ds-5+deb12u1

build() {
  local out="$1"
  command -v apt-get >/dev/null || { echo "apt-get is not available (needed to fetch Debian's $package)" >&2; return 1; }
  command -v dpkg-deb >/dev/null || { echo "dpkg-deb is not available (needed to unpack Debian's $package)" >&2; return 1; }
  local dl="$out/.download"
  mkdir -p "$dl"
  # Run as root, apt downloads "unsandboxed" (with a warning) when its _apt user cannot
  # write here; that is all the warning means.
  if ! (cd "$dl" && apt-get download -q "$package=$version"); then
    echo "apt-get download $package=$version failed; refreshing apt's package lists once" >&2
    apt-get update -qq
    (cd "$dl" && apt-get download -q "$package=$version") || {
      echo "Debian's $package $version cannot be downloaded; apt offers:" >&2
      apt-cache policy "$package" >&2
      return 1
    }
  fi
  local deb
  deb="$(find "$dl" -name "${package}_*.deb" | head -1)"
  [ -n "$deb" ] || { echo "apt-get download left no ${package}_*.deb" >&2; return 1; }
  local got
  got="$(dpkg-deb -f "$deb" Version)"
  [ "$got" = "$version" ] || { echo "downloaded $package $got, expected $version" >&2; return 1; }
  dpkg-deb -x "$deb" "$out/deb"
  echo "Debian $package $version ($(dpkg-deb -f "$deb" Architecture)), sha256 $(sha256sum "$deb" | cut -d' ' -f1)" \
    >"$out/VERSION"
  rm -rf "$dl"
  ln -s deb/usr/bin/prometheus "$out/prometheus"
  ln -s deb/usr/bin/promtool "$out/promtool"
  "$out/promtool" --version | tee -a "$out/VERSION"
  "$out/prometheus" --version | tee -a "$out/VERSION"
}

install_once "$(key "prometheus-$version" "$here/prometheus.sh" "$here/lib.sh")" build
