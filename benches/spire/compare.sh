#!/usr/bin/env bash
# Side by side, in one run on this machine: `meshid serve workload-api` and SPIRE's
# `spire-agent` (v1.13.3, under its own `spire-server`) serving the same watching clients.
#
#   bash benches/spire/compare.sh [--clients 1,100,1000] [--rotations K (8)] [--out DIR] [--smoke]
#
# For each client count N, each server in turn gets a fresh process and N watching clients
# (benches/spire/watcher: one go-spiffe v2.9.0 program, N goroutines, each its own
# workloadapi.Client, connection and WatchX509Context, timestamping every update it
# receives). Measured, per server and N:
#
# - RSS: VmRSS of the serving process (meshid; spire-agent) 2 s after every client has
#   received its first update (idle), and VmHWM (peak) at the end of the phase.
#   spire-server is reported beside it, not compared.
# - CPU per rotation: the serving process's time on a CPU over a window of K whole rotation
#   periods, divided by K: utime+stime from /proc/PID/stat (every thread, ended ones too;
#   whole 10 ms ticks at each end, so ±20 ms/K). Beside it, the sum over its threads of
#   /proc/PID/task/TID/schedstat (ns), sampled every 0.2 s so that a thread ending inside
#   the window counts up to its last sample (what it does after, and its exit, are lost).
#   The window opens 0.5 s after every client has received rotation r and closes 0.5 s
#   after every client has received rotation r+K (a rotation is a new leaf serial; the
#   server's own log must show exactly K in the window). Idle work between rotations
#   (SPIRE's agent syncs with its server every 5 s) is part of it.
# - Rotation-to-client latency p50/p99, over every (rotation, client) pair of the rotations
#   every client received after its first update: the client's receive time minus the
#   instant the server logged the new SVID as about to be served. meshid: its "publishing
#   X509-SVID" event (RUST_LOG=meshid::rotate=debug, logged just before the store
#   publishes it; µs timestamps, matched by serial). SPIRE: the agent's "SVID updated"
#   event for the entry (cache_manager, logged under the cache lock just before it
#   notifies the subscribers; log_format json, ns timestamps), which SPIRE logs only at
#   DEBUG, where it also logs one "Fetched X.509 SVID" line per client per update. So SPIRE
#   runs twice per N: at INFO (its RSS, CPU and fan-out figures) and at DEBUG (its
#   rotation-to-client latency). One machine, one clock (CLOCK_REALTIME).
# - Fan-out p50/p99: each client's receive time minus the first client's, per rotation;
#   needs no server log.
# - Beside each window: the watcher's CPU and the rest of the machine's (every CPU's busy
#   time from /proc/stat, less the server's, spire-server's and the watcher's), to show
#   whether something else ran meanwhile (this machine may be shared). A phase whose
#   window saw more than $MESHID_BENCH_MAX_OTHERS ms/s of it (default 300: 15 % of two
#   cores; this script's own polling is part of it) is redone, up to 3 times in all; and
#   each phase first waits (up to 30 min) for a 5 s stretch in which the whole machine was
#   busy less than that.
#
# Both servers rotate about every 10 s: meshid `--ttl 20s` renews at 40 to 60 % of the
# lifetime (8 to 12 s); SPIRE's entry has `-x509SVIDTTL 30`, its server backdates NotBefore
# 10 s, and its agent renews once less than 45 to 55 % of the 40 s certificate is left
# (8 to 12 s after issue), checked at each 5 s sync (so every 10 to 15 s). --smoke: 2
# clients, 1 rotation, TTLs 10 s and 20 s (about 5 s periods), about 80 s after the build.
# Every run exits non-zero if any figure is missing or a check fails.
#
# Needs: Rust (builds meshid with --features cli in $CARGO_TARGET_DIR or target/), Go (the
# watcher, cached like the test peers by tests/peers/lib.sh in $MESHID_PEER_CACHE), Python 3
# (analyze.py), and SPIRE from `bash tests/peers/spire.sh` (or a directory holding
# spire-server and spire-agent in $MESHID_SPIRE_DIR; the meshid binary in $MESHID_BIN).
# Writes every raw file and the report (report.md) into --out (default: a new directory
# under /tmp, printed), and prints the report.
set -euo pipefail

bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$bench/../.." && pwd)"

clients="1,100,1000"
rotations=8
out=""
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients="$2"; shift 2 ;;
    --rotations) rotations="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
# A window in which the rest of the machine (not the server, spire-server or the watcher)
# used more CPU than this (ms per second) is redone: someone else's build, say.
max_others="${MESHID_BENCH_MAX_OTHERS:-300}"
meshid_ttl=20s
spire_ttl=30
quiet_secs=5
if [ "$smoke" = 1 ]; then
  quiet_secs=2
  clients=2
  rotations=1
  meshid_ttl=10s
  spire_ttl=20
fi
IFS=, read -r -a counts <<<"$clients"
max=0
for n in "${counts[@]}"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "--clients: not a count: $n" >&2; exit 2; }
  [ "$n" -gt "$max" ] && max=$n
done

# Each server holds N connections and the watcher N more, beside their own files.
need=$((max + 256))
if [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  [ "$(ulimit -n)" -ge "$need" ] || { echo "ulimit -n is $(ulimit -n), $need needed" >&2; exit 1; }
fi

# --- binaries --------------------------------------------------------------------------
if [ -n "${MESHID_BIN:-}" ]; then
  meshid="$MESHID_BIN"
else
  (cd "$repo" && cargo build --release --features cli --bin meshid >&2)
  meshid="${CARGO_TARGET_DIR:-$repo/target}/release/meshid"
fi
[ -x "$meshid" ] || { echo "no meshid binary at $meshid" >&2; exit 1; }

if [ -n "${MESHID_SPIRE_DIR:-}" ]; then
  spire_dir="$MESHID_SPIRE_DIR"
else
  spire_dir="$(bash "$repo/tests/peers/spire.sh" | tail -n 1)"
fi
for b in spire-server spire-agent; do
  [ -x "$spire_dir/$b" ] || { echo "no $b in $spire_dir" >&2; exit 1; }
done

# The watcher, built once per version of its sources (tests/peers/lib.sh's cache).
watcher_dir="$(
  # shellcheck source=../../tests/peers/lib.sh
  source "$repo/tests/peers/lib.sh"
  src="$bench/watcher"
  build_watcher() {
    command -v go >/dev/null || { echo "go is not installed (needed for the watcher)" >&2; return 1; }
    (cd "$src" && go build -mod=readonly -trimpath -o "$1/watcher" .)
    go version >"$1/VERSION"
  }
  install_once "$(key spire-bench-watcher "$src/go.mod" "$src/go.sum" "$src/main.go" "$here/lib.sh")" build_watcher | tail -n 1
)"
watcher="$watcher_dir/watcher"
[ -x "$watcher" ] || { echo "no watcher at $watcher" >&2; exit 1; }

# --- scratch, processes ----------------------------------------------------------------
# Sockets live in a short directory (a Unix socket path must stay under 108 bytes).
run="$(mktemp -d /tmp/msb.XXXXXX)"
[ -n "$out" ] || out="$run/out"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The processes this script started and has not reaped yet: only these are ever signalled
# (a reaped PID may belong to someone else's process by now).
started=()
stop_pid() { # stop_pid PID: SIGTERM, SIGKILL after 10 s; reaps it and forgets it
  local pid="$1" i kept=()
  if kill -TERM "$pid" 2>/dev/null; then
    for i in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for i in "${started[@]}"; do [ "$i" = "$pid" ] || kept+=("$i"); done
  started=("${kept[@]}")
}
cleanup() {
  local pid
  for pid in "${started[@]}"; do stop_pid "$pid"; done
  rm -rf "$run/spire" "$run/meshid"
  [ "$out" = "$run/out" ] || rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "compare.sh: $*" >&2; exit 1; }

# cpu_ticks PID: utime+stime of the process (every thread, live or gone), in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# thread_ns PID: "TID ns" for each live thread of the process, ns its time on a CPU
# (/proc/PID/task/TID/schedstat): what CPU per rotation is computed from, ticks cross-check.
thread_ns() {
  grep -Hs '' /proc/"$1"/task/*/schedstat | sed -E 's|^/proc/[0-9]+/task/([0-9]+)/schedstat:([0-9]+) .*|\1 \2|'
  return 0
}
# sample_threads PID FILE [SIDE SIDE_FILE]: appends thread_ns every 0.2 s until killed, so a
# thread that ends inside the window (tokio's blocking threads idle out after 10 s) is
# counted up to its last sample.
sample_threads() {
  while :; do
    thread_ns "$1" >>"$2"
    [ -z "${3:-}" ] || thread_ns "$3" >>"$4"
    sleep 0.2
  done
}
# status_kib PID FIELD: VmRSS, VmHWM, ... in KiB.
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
now_ns() { date +%s%N; }
# machine_busy: the ticks every CPU of the machine spent busy (not idle or waiting on I/O).
machine_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# complete_serials FILE N: how many serials every one of the N clients has received.
complete_serials() {
  awk -v n="$2" '$1 == "u" { k = $4 SUBSEP $3; if (!(k in got)) { got[k] = 1; if (++c[$4] == n) full++ } }
    END { print full + 0 }' "$1"
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
  local what="$1" secs="$2" deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}
quiet() { "$@" >/dev/null 2>&1; }
has_line() { grep -q "$2" "$1" 2>/dev/null; }
complete_at_least() { [ "$(complete_serials "$1" "$2")" -ge "$3" ]; }
alive() { kill -0 "$1" 2>/dev/null || fail "$2 exited (see $3)"; }

# measure DIR PID N [SIDE_PID]: runs the watcher against the server PID (socket DIR/api.sock)
# and writes DIR/metrics (key=value) and DIR/watch.txt.
measure() {
  local dir="$1" pid="$2" n="$3" side="${4:-}"
  local watch="$dir/watch.txt" m="$dir/metrics" wpid spid base
  "$watcher" -addr "unix://$dir/api.sock" -n "$n" >"$watch" 2>"$dir/watch.err" &
  wpid=$!
  started+=("$wpid")
  wait_for "$n clients' first updates" $((60 + n / 10)) has_line "$watch" '^ready '
  alive "$pid" server "$dir"
  sleep 2
  {
    echo "clients=$n"
    echo "pid=$pid"
    echo "rss_kib=$(status_kib "$pid" VmRSS)"
    [ -z "$side" ] || echo "side_rss_kib=$(status_kib "$side" VmRSS)"
  } >"$m"
  # Align on a rotation every client has received, then count K more.
  base=$(complete_serials "$watch" "$n")
  wait_for "a rotation" 60 complete_at_least "$watch" "$n" $((base + 1))
  sleep 0.5
  {
    echo "t0_ns=$(now_ns)"
    echo "cpu0=$(cpu_ticks "$pid")"
    [ -z "$side" ] || echo "side_cpu0=$(cpu_ticks "$side")"
    echo "watcher_cpu0=$(cpu_ticks "$wpid")"
    echo "busy0=$(machine_busy)"
  } >>"$m"
  thread_ns "$pid" >"$dir/threads0"
  [ -z "$side" ] || thread_ns "$side" >"$dir/side_threads0"
  : >"$dir/samples"
  : >"$dir/side_samples"
  sample_threads "$pid" "$dir/samples" "$side" "$dir/side_samples" &
  spid=$!
  started+=("$spid")
  wait_for "$rotations rotations" $((40 * rotations)) complete_at_least "$watch" "$n" $((base + 1 + rotations))
  sleep 0.5
  stop_pid "$spid"
  thread_ns "$pid" >"$dir/threads1"
  [ -z "$side" ] || thread_ns "$side" >"$dir/side_threads1"
  {
    echo "t1_ns=$(now_ns)"
    echo "cpu1=$(cpu_ticks "$pid")"
    [ -z "$side" ] || echo "side_cpu1=$(cpu_ticks "$side")"
    echo "watcher_cpu1=$(cpu_ticks "$wpid")"
    echo "busy1=$(machine_busy)"
    echo "hwm_kib=$(status_kib "$pid" VmHWM)"
    echo "rotations=$rotations"
    echo "clk_tck=$(getconf CLK_TCK)"
  } >>"$m"
  alive "$pid" server "$dir"
  stop_pid "$wpid"
  # The rest of the machine's CPU in the window (ms/s): busy time of every CPU less the
  # server's, spire-server's and the watcher's, which includes this script's own polling.
  awk -F= '{ v[$1] = $2 } END {
      o = v["busy1"] - v["busy0"] - (v["cpu1"] - v["cpu0"]) - (v["watcher_cpu1"] - v["watcher_cpu0"])
      if ("side_cpu1" in v) o -= v["side_cpu1"] - v["side_cpu0"]
      printf "others_ms_s=%d\n", o * 1000 / v["clk_tck"] / ((v["t1_ns"] - v["t0_ns"]) / 1e9) }' "$m" >>"$m"
}

# wait_quiet: waits (up to 30 min, then goes on) until the machine's CPUs were busy less
# than $max_others ms/s over 5 s (2 with --smoke), so a phase does not start in the middle
# of someone's build.
wait_quiet() {
  local deadline=$((SECONDS + 1800)) b0 b1 rate said=0
  while :; do
    b0=$(machine_busy)
    sleep "$quiet_secs"
    b1=$(machine_busy)
    rate=$(((b1 - b0) * 1000 / $(getconf CLK_TCK) / quiet_secs))
    [ "$rate" -gt "$max_others" ] || return 0
    [ "$SECONDS" -lt "$deadline" ] || { echo "  the machine is still busy ($rate ms/s); going on" >&2; return 0; }
    [ "$said" = 1 ] || echo "  waiting for the machine to quiet down ($rate ms/s busy)" >&2
    said=1
  done
}

# attempts KIND N...: runs "run_KIND N ..." until its window was not disturbed by other load
# (at most 3 times; if all were, the last is kept and marked); records the attempts.
attempts() {
  local kind="$1" i others
  shift
  for i in 1 2 3; do
    wait_quiet
    "run_$kind" "$@"
    echo "attempts=$i" >>"$last_metrics"
    others=$(awk -F= '$1 == "others_ms_s" { print $2 }' "$last_metrics")
    [ "$others" -gt "$max_others" ] || return 0
    echo "  the rest of the machine used $others ms/s of CPU in the window (> $max_others)" >&2
    [ "$i" = 3 ] || echo "  redoing the phase" >&2
  done
  echo "disturbed=1" >>"$last_metrics"
}

# --- meshid ----------------------------------------------------------------------------
mkdir -p "$run/meshid"
"$meshid" ca init --trust-domain example.org --out "$run/meshid/ca" >/dev/null

run_meshid() {
  local n="$1" dir="$run/meshid/$1" pid
  mkdir -p "$dir"
  echo "meshid serve workload-api: $n clients" >&2
  RUST_LOG=warn,meshid::rotate=debug "$meshid" serve workload-api --socket "$dir/api.sock" \
    --ca "$run/meshid/ca" --id spiffe://example.org/bench --ttl "$meshid_ttl" \
    --max-conns $((n + 64)) >"$dir/server.out" 2>"$dir/server.log" &
  pid=$!
  started+=("$pid")
  wait_for "meshid's socket" 30 test -S "$dir/api.sock"
  measure "$dir" "$pid" "$n"
  stop_pid "$pid"
  rm -rf "$out/meshid-$n"
  mkdir -p "$out/meshid-$n"
  cp "$dir"/{metrics,watch.txt,server.log,threads0,threads1,samples} "$out/meshid-$n/"
  last_metrics="$out/meshid-$n/metrics"
  rm -rf "$dir"
}

# --- SPIRE -----------------------------------------------------------------------------
spire="$run/spire"
mkdir -p "$spire/data"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$spire/server.conf" <<EOF
server {
    bind_address = "127.0.0.1"
    bind_port = "$port"
    socket_path = "$spire/s.sock"
    trust_domain = "example.org"
    data_dir = "$spire/data"
    log_level = "INFO"
    log_format = "json"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "$spire/data/datastore.sqlite3"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
}
EOF
server_api=(-socketPath "$spire/s.sock")
start_spire_server() {
  echo "spire-server: starting" >&2
  "$spire_dir/spire-server" run -config "$spire/server.conf" >"$spire/server.log" 2>&1 &
  spire_server=$!
  started+=("$spire_server")
  wait_for "spire-server to be healthy" 60 quiet "$spire_dir/spire-server" healthcheck "${server_api[@]}"
  "$spire_dir/spire-server" bundle show "${server_api[@]}" >"$spire/bundle.pem"
  "$spire_dir/spire-server" entry create "${server_api[@]}" -parentID spiffe://example.org/node \
    -spiffeID spiffe://example.org/bench -selector "unix:uid:$(id -u)" -x509SVIDTTL "$spire_ttl" >"$spire/entry.txt"
}

run_spire() {
  local n="$1" level="$2" dir="$spire/$1-$2" pid token
  mkdir -p "$dir/data"
  echo "spire-agent (log_level $level): $n clients" >&2
  token="$("$spire_dir/spire-server" token generate "${server_api[@]}" -spiffeID spiffe://example.org/node)"
  token="${token#Token: }"
  cat >"$dir/agent.conf" <<EOF
agent {
    data_dir = "$dir/data"
    log_level = "$level"
    log_format = "json"
    server_address = "127.0.0.1"
    server_port = "$port"
    socket_path = "$dir/api.sock"
    trust_bundle_path = "$spire/bundle.pem"
    trust_domain = "example.org"
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
EOF
  "$spire_dir/spire-agent" run -config "$dir/agent.conf" -joinToken "$token" >"$dir/server.log" 2>&1 &
  pid=$!
  started+=("$pid")
  wait_for "spire-agent to be healthy" 60 quiet "$spire_dir/spire-agent" healthcheck -socketPath "$dir/api.sock"
  # Healthy is not yet holding the entry's SVID (a client would be told "no identity
  # issued" and back off): wait until a fetch gets it.
  wait_for "spire-agent to hold the SVID" 60 quiet "$spire_dir/spire-agent" api fetch x509 -silent -socketPath "$dir/api.sock"
  measure "$dir" "$pid" "$n" "$spire_server"
  stop_pid "$pid"
  rm -rf "$out/spire-$level-$n"
  mkdir -p "$out/spire-$level-$n"
  cp "$dir"/{metrics,watch.txt,server.log,agent.conf,threads0,threads1,samples,side_threads0,side_threads1,side_samples} "$out/spire-$level-$n/"
  last_metrics="$out/spire-$level-$n/metrics"
  rm -rf "$dir"
}

start_spire_server
cp "$spire/server.conf" "$out/spire-server.conf"
for n in "${counts[@]}"; do
  attempts meshid "$n"
  attempts spire "$n" INFO
  attempts spire "$n" DEBUG
done
stop_pid "$spire_server"
cp "$spire/server.log" "$out/spire-server.log"

{
  echo "machine: $(nproc) cores, $(uname -sr), $(awk '/^MemTotal/ {print $2 " kB RAM"}' /proc/meminfo), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "meshid: $("$meshid" --version) ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "spire: $("$spire_dir/spire-agent" --version 2>&1 | head -n 1), from $spire_dir"
  echo "watcher: go-spiffe $(awk '$2 == "github.com/spiffe/go-spiffe/v2" {print $3}' "$bench/watcher/go.mod"), $(cat "$watcher_dir/VERSION")"
  echo "meshid: serve workload-api --ttl $meshid_ttl --max-conns N+64, RUST_LOG=warn,meshid::rotate=debug"
  echo "spire: entry -x509SVIDTTL $spire_ttl, join_token, KeyManager memory, unix attestor, log_format json"
  echo "rotations per window: $rotations; clients: $clients"
} >"$out/settings.txt"
python3 "$bench/analyze.py" "$out" | tee "$out/report.md"
echo "raw files and report: $out" >&2
