# Shared by the peer installers in this folder (sourced, not run).
#
# Each installer puts one test peer into a cache outside the clone, keyed by the peer's
# version and by a hash of the installer and its inputs, and prints the installed path as
# its last line of standard output. A cache entry is only used once it is complete (it is
# built under a temporary name and renamed into place), so an interrupted install is
# simply redone. Installers take a lock, so concurrent tests install a peer once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${MESHID_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshid-peers}"
mkdir -p "$cache_root"

# key NAME FILE...: NAME-<hash of the given files' contents>
key() {
  local name="$1"
  shift
  printf '%s-%s' "$name" "$(cat "$@" | sha256sum | cut -c1-16)"
}

# install_once KEY BUILD_FUNCTION: runs BUILD_FUNCTION DIR (an empty staging directory) once
# per KEY, under a lock, and prints the final directory.
install_once() {
  local key="$1" build="$2"
  local final="$cache_root/$key"
  if [ -e "$final/.complete" ]; then
    printf '%s\n' "$final"
    return
  fi
  exec 9>"$cache_root/$key.lock"
  flock 9
  if [ ! -e "$final/.complete" ]; then
    local staging="$cache_root/.staging-$key-$$"
    rm -rf "$staging" "$final"
    mkdir -p "$staging"
    echo "meshid peers: installing $key into $cache_root (once per machine)" >&2
    "$build" "$staging" >&2
    touch "$staging/.complete"
    mv "$staging" "$final"
  fi
  flock -u 9
  printf '%s\n' "$final"
}
