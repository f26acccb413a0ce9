#!/usr/bin/env bash
# Installs the go-spiffe Workload API client (tests/peers/go-spiffe: go-spiffe v2 over
# grpc-go, versions pinned by its go.mod and go.sum) as <cache>/go-spiffe-<hash>/go-spiffe-peer
# and prints that directory. Needs Go and the Go module proxy (or a warm module cache).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

src="$here/go-spiffe"

build() {
  local out="$1"
  command -v go >/dev/null || { echo "go is not installed (needed to build the go-spiffe peer)" >&2; return 1; }
  # -mod=readonly: the committed go.sum is the whole truth; nothing is written into the clone.
  (cd "$src" && go build -mod=readonly -trimpath -o "$out/go-spiffe-peer" .)
  go version >"$out/VERSION"
  grep -E '^\s*(require )?github.com/spiffe/go-spiffe|google.golang.org/grpc ' "$src/go.mod" >>"$out/VERSION"
}

install_once "$(key go-spiffe "$src/go.mod" "$src/go.sum" "$src/main.go" "$here/go-spiffe.sh" "$here/lib.sh")" build
