#!/usr/bin/env bash
# Installs SPIRE's own server and agent (github.com/spiffe/spire v1.13.3 from the Go module
# proxy, every dependency pinned by tests/peers/spire/go.mod and go.sum, which name them as
# `tool`s) as <cache>/spire-v1.13.3-<hash>/{spire-server,spire-agent} and prints that
# directory. Needs Go and the Go module proxy (or a warm module cache); the first build
# takes several minutes on two cores, later runs reuse the cache.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

src="$here/spire"
version=v1.13.3

build() {
  local out="$1"
  command -v go >/dev/null || { echo "go is not installed (needed to build SPIRE)" >&2; return 1; }
  grep -q "github.com/spiffe/spire $version" "$src/go.mod" \
    || { echo "tests/peers/spire/go.mod does not pin spire $version" >&2; return 1; }
  # -mod=readonly: the committed go.sum is the whole truth; nothing is written into the clone.
  (cd "$src" && go build -mod=readonly -trimpath -o "$out/" \
    github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent)
  "$out/spire-server" --version >"$out/VERSION" 2>&1 || true
  go version >>"$out/VERSION"
}

install_once "$(key "spire-$version" "$src/go.mod" "$src/go.sum" "$here/spire.sh" "$here/lib.sh")" build
