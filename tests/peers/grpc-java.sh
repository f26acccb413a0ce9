#!/usr/bin/env bash
# Installs the grpc-java Workload API client (tests/peers/grpc-java: java-spiffe and a raw
# grpc-netty call over epoll; versions pinned in its pom.xml) as
# <cache>/grpc-java-<hash>/grpc-java-peer (a launcher; the jars are in lib/) and prints that
# directory. Needs Java 17 and Maven (its repository, ~/.m2, is outside the clone); Maven
# builds a copy of the project inside the staging directory, so nothing is written here.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

src="$here/grpc-java"

build() {
  local out="$1"
  command -v mvn >/dev/null || { echo "mvn is not installed (needed to build the grpc-java peer)" >&2; return 1; }
  command -v java >/dev/null || { echo "java is not installed (needed to build the grpc-java peer)" >&2; return 1; }
  mkdir -p "$out/src" "$out/lib"
  cp -r "$src/pom.xml" "$src/src" "$out/src/"
  mvn -q -B -Dstyle.color=never -f "$out/src/pom.xml" package dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$out/lib"
  mv "$out/src/target/grpc-java-peer.jar" "$out/lib/"
  rm -rf "$out/src/target"
  cat >"$out/grpc-java-peer" <<'LAUNCHER'
#!/bin/sh
exec java -cp "$(dirname "$0")/lib/*" meshid.peer.Main "$@"
LAUNCHER
  chmod +x "$out/grpc-java-peer"
  { java -version 2>&1 | head -1; ls "$out/lib"; } >"$out/VERSION"
}

mapfile -t inputs < <(find "$src" -type f | LC_ALL=C sort)
install_once "$(key grpc-java "${inputs[@]}" "$here/grpc-java.sh" "$here/lib.sh")" build
