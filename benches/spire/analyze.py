#!/usr/bin/env python3
"""Reads the raw files benches/spire/compare.sh wrote into OUT and prints the report
(markdown) on standard output; exits 1, naming it, if any figure is missing or a check
fails (a phase without K rotations in its window, a rotation no server log line explains).

    python3 benches/spire/analyze.py OUT

Definitions are in compare.sh's header."""

import datetime
import json
import math
import os
import re
import sys

BENCH_ID = "spiffe://example.org/bench"


def fail(msg):
    print(f"analyze.py: {msg}", file=sys.stderr)
    sys.exit(1)


def rfc3339_ns(text):
    """Unix ns of an RFC 3339 UTC timestamp with up to 9 fractional digits."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", text)
    if not m:
        raise ValueError(f"not an RFC 3339 UTC time: {text}")
    whole = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    whole = whole.replace(tzinfo=datetime.timezone.utc)
    frac = int((m.group(2) or "0").ljust(9, "0"))
    return int(whole.timestamp()) * 1_000_000_000 + frac


def serial(text):
    return text.lower().lstrip("0") or "0"


def percentile(values, p):
    """Nearest rank."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def read_metrics(path):
    m = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            if k:
                m[k] = int(v)
    return m


def read_watch(path):
    """(updates as (t_ns, client, serial), errors, ended)."""
    updates, errors, ended = [], [], False
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p:
                continue
            if p[0] == "u":
                updates.append((int(p[1]), int(p[2]), serial(p[3])))
            elif p[0] == "e":
                errors.append(line.strip())
            elif p[0] == "end":
                ended = True
    return updates, errors, ended


def thread_cpu_ns(d, prefix):
    """(ns on a CPU in the window, threads that ended in it) from the schedstat snapshots
    compare.sh took at the window's ends and the samples between: each thread counts up
    to its last sighting, from its value at the start (0 if it started later)."""

    def read(name, into=None):
        into = {} if into is None else into
        with open(os.path.join(d, name)) as f:
            for line in f:
                p = line.split()
                if len(p) == 2:
                    t, ns = int(p[0]), int(p[1])
                    into[t] = max(into.get(t, 0), ns)
        return into

    before = read(prefix + "threads0")
    after = read(prefix + "threads1")
    if not before or not after:
        fail(f"{d}: no thread CPU times")
    ended = len(set(read(prefix + "samples")) - set(after))
    seen = read(prefix + "samples", dict(after))
    return sum(ns - before.get(t, 0) for t, ns in seen.items()), ended


def meshid_events(path):
    """serial -> Unix ns of meshid's 'rotated X509-SVID' events."""
    events = {}
    pat = re.compile(r"^(\S+)\s+DEBUG publishing X509-SVID .*\bserial=([0-9a-fA-F]+)")
    with open(path) as f:
        for line in f:
            m = pat.match(line)
            if m:
                events[serial(m.group(2))] = rfc3339_ns(m.group(1))
    return events


def spire_events(path, msg):
    """Unix ns of the agent's `msg` log events for the bench entry, in order."""
    times = []
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("msg") == msg and e.get("spiffe_id") == BENCH_ID:
                times.append(rfc3339_ns(e["time"]))
    return sorted(times)


def phase(out, name):
    d = os.path.join(out, name)
    if not os.path.isdir(d):
        fail(f"{name}: no such phase in {out}")
    m = read_metrics(os.path.join(d, "metrics"))
    for k in ("clients", "rss_kib", "hwm_kib", "t0_ns", "t1_ns", "cpu0", "cpu1", "rotations", "clk_tck"):
        if k not in m:
            fail(f"{name}: {k} missing from metrics")
    n, k = m["clients"], m["rotations"]
    updates, errors, ended = read_watch(os.path.join(d, "watch.txt"))
    if not ended:
        fail(f"{name}: the watcher did not end cleanly")

    # Each client's first receipt of each serial, and each client's first update.
    first = {}  # serial -> {client: t}
    initial = {}  # client -> serial of its first update
    for t, c, s in updates:
        initial.setdefault(c, s)
        first.setdefault(s, {}).setdefault(c, t)
    if len(initial) != n:
        fail(f"{name}: {len(initial)} of {n} clients received an update")
    initial_serials = set(initial.values())
    rotations = sorted(
        (s for s, by in first.items() if len(by) == n and s not in initial_serials),
        key=lambda s: min(first[s].values()),
    )
    in_window = [s for s in rotations if m["t0_ns"] < min(first[s].values()) < m["t1_ns"]]
    if len(in_window) != k:
        fail(f"{name}: {len(in_window)} rotations delivered in the window, {k} expected")

    log = os.path.join(d, "server.log")
    if name.startswith("meshid"):
        events = meshid_events(log)
        instants = {}
        for s in rotations:
            if s not in events:
                fail(f"{name}: serial {s} is in no 'publishing X509-SVID' log line")
            instants[s] = events[s]
        logged = sorted(events.values())
    else:
        updated = spire_events(log, "SVID updated")
        logged = updated or spire_events(log, "Renewing X509-SVID")
        instants = {}
        if updated:
            # The agent logs no serial: a rotation's instant is the last "SVID updated" for
            # the entry at or before its first receipt; each must be its own.
            for s in rotations:
                f = min(first[s].values())
                before = [t for t in updated if t <= f]
                if not before or f - before[-1] > 5_000_000_000:
                    fail(f"{name}: no 'SVID updated' within 5 s before serial {s} arrived")
                instants[s] = before[-1]
            if len(set(instants.values())) != len(instants):
                fail(f"{name}: two rotations matched one 'SVID updated' line")
    # The server's own count of rotations in the window (SPIRE at INFO: its "Renewing
    # X509-SVID" lines, a few ms before each update is in place).
    counted = sum(1 for t in logged if m["t0_ns"] < t < m["t1_ns"])
    if counted != k:
        fail(f"{name}: the server logged {counted} rotations in the window, {k} expected")

    latency, fanout, per_rotation = [], [], []
    for s in rotations:
        by = {c: t for c, t in first[s].items() if initial[c] != s}
        f = min(first[s].values())
        fanout += [t - f for t in by.values()]
        if s in instants:
            latency += [t - instants[s] for t in by.values()]
            per_rotation.append((f - instants[s], max(by.values()) - instants[s]))
    if not fanout:
        fail(f"{name}: no rotation reached every client")

    tick_ms = 1000 / m["clk_tck"]
    cpu_ns, ended = thread_cpu_ns(d, "")
    r = {
        "clients": n,
        "rss_mib": m["rss_kib"] / 1024,
        "hwm_mib": m["hwm_kib"] / 1024,
        "cpu_ms": cpu_ns / 1e6 / k,
        "threads_ended": ended,
        "cpu_ticks_ms": (m["cpu1"] - m["cpu0"]) * tick_ms / k,
        "tick_ms": tick_ms,
        "cpu_ticks": m["cpu1"] - m["cpu0"],
        "window_s": (m["t1_ns"] - m["t0_ns"]) / 1e9,
        "rotations": k,
        "lat_rotations": len(rotations),
        "fan50": percentile(fanout, 50) / 1e6,
        "fan99": percentile(fanout, 99) / 1e6,
        "samples": len(fanout),
        "errors": len(errors),
        "negative": sum(1 for v in latency if v < 0),
        "per_rotation": per_rotation,
    }
    if latency:
        r["lat50"] = percentile(latency, 50) / 1e6
        r["lat99"] = percentile(latency, 99) / 1e6
    window_ms = (m["t1_ns"] - m["t0_ns"]) / 1e6
    r["watcher_ms_s"] = (m["watcher_cpu1"] - m["watcher_cpu0"]) * tick_ms / window_ms * 1000
    others = m["busy1"] - m["busy0"] - (m["cpu1"] - m["cpu0"]) - (m["watcher_cpu1"] - m["watcher_cpu0"])
    if "side_cpu1" in m:
        others -= m["side_cpu1"] - m["side_cpu0"]
    r["others_ms_s"] = others * tick_ms / window_ms * 1000
    r["attempts"] = m.get("attempts", 1)
    r["disturbed"] = m.get("disturbed", 0)
    if "side_rss_kib" in m:
        r["side_rss_mib"] = m["side_rss_kib"] / 1024
        r["side_cpu_ms"] = thread_cpu_ns(d, "side_")[0] / 1e6 / k
    return r


def fmt(v, digits):
    return f"{v:.{digits}f}"


def main():
    if len(sys.argv) != 2:
        fail("usage: analyze.py OUT")
    out = sys.argv[1]
    counts = sorted(
        {int(x.split("-")[-1]) for x in os.listdir(out) if re.fullmatch(r"meshid-\d+", x)}
    )
    if not counts:
        fail(f"no phases in {out}")
    rows = []
    for n in counts:
        rows.append((n, phase(out, f"meshid-{n}"), phase(out, f"spire-INFO-{n}"), phase(out, f"spire-DEBUG-{n}")))
    for n, _, _, dbg in rows:
        if "lat50" not in dbg:
            fail(f"spire-DEBUG-{n}: no rotation-to-client latency")

    print("## meshid serve workload-api vs spire-agent\n")
    with open(os.path.join(out, "settings.txt")) as f:
        for line in f:
            print(f"- {line.strip()}")
    print()
    print("| clients | figure | meshid | spire-agent | meshid/SPIRE |")
    print("| ---: | --- | ---: | ---: | ---: |")
    figures = [
        ("RSS idle, MiB", "rss_mib", 1, "info"),
        ("RSS peak (VmHWM), MiB", "hwm_mib", 1, "info"),
        ("CPU per rotation, ms: utime+stime (schedstat sampled)", "cpu_ticks_ms", 1, "info"),
        ("rotation-to-client p50, ms", "lat50", 2, "debug"),
        ("rotation-to-client p99, ms", "lat99", 2, "debug"),
        ("fan-out p50, ms", "fan50", 2, "info"),
        ("fan-out p99, ms", "fan99", 2, "info"),
    ]
    for n, me, info, dbg in rows:
        for label, key, digits, which in figures:
            if key.startswith("fan") and n <= 2:
                continue  # one client: nothing fans out; two: p50 is the first's, 0
            sp = info if which == "info" else dbg
            a, b = me[key], sp[key]
            ratio = f"{a / b:.2f}" if b else "n/a (SPIRE 0)"
            if key == "cpu_ticks_ms":
                # utime+stime are read in whole ticks at both ends of the window; under 20
                # ticks, the ratio is the sampled schedstat sums' (ns), marked so.
                a_text = f"{fmt(a, digits)} ± {fmt(2 * me['tick_ms'] / me['rotations'], 1)} ({fmt(me['cpu_ms'], 2)})"
                b_text = f"{fmt(b, digits)} ± {fmt(2 * sp['tick_ms'] / sp['rotations'], 1)} ({fmt(sp['cpu_ms'], 2)})"
                if min(me["cpu_ticks"], sp["cpu_ticks"]) < 20:
                    ratio = f"{me['cpu_ms'] / sp['cpu_ms']:.2f} (sampled)"
            else:
                a_text, b_text = fmt(a, digits), fmt(b, digits)
            print(f"| {n} | {label} | {a_text} | {b_text} | {ratio} |")
    print()
    print("SPIRE's RSS, CPU and fan-out are from its run at log_level INFO; its")
    print("rotation-to-client latency from its run at DEBUG (the only level at which it logs")
    print("the instant an SVID is in place). CPU is utime+stime of the whole process (every")
    print("thread, ended ones too), read in 10 ms ticks at both ends of the window (hence ±);")
    print("the sum of its threads' schedstat, sampled every 0.2 s, is beside it below (ns,")
    print("but it misses what a thread does after its last sample, and its exit). Every phase,")
    print("as measured:\n")
    print(
        "| phase | clients | RSS MiB | HWM MiB | CPU ms/rot: ticks (n), sampled; window s | p50 ms | p99 ms "
        "| fan-out p50/p99 ms | rotations (latency) | watch errors | spire-server RSS MiB, CPU ms/rot "
        "| CPU ms/s: watcher, rest of machine | attempts |"
    )
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | --- | --- | ---: |")
    for n, *phases in rows:
        for label, r in zip(("meshid", "spire-agent INFO", "spire-agent DEBUG"), phases):
            lat50 = fmt(r["lat50"], 2) if "lat50" in r else "-"
            lat99 = fmt(r["lat99"], 2) if "lat99" in r else "-"
            side = (
                f"{fmt(r['side_rss_mib'], 1)}, {fmt(r['side_cpu_ms'], 1)}" if "side_rss_mib" in r else "-"
            )
            print(
                f"| {label} | {n} | {fmt(r['rss_mib'], 1)} | {fmt(r['hwm_mib'], 1)} "
                f"| {fmt(r['cpu_ticks_ms'], 1)} ({r['cpu_ticks']}), {fmt(r['cpu_ms'], 2)}; {fmt(r['window_s'], 1)} "
                f"| {lat50} | {lat99} "
                f"| {fmt(r['fan50'], 2)}/{fmt(r['fan99'], 2)} | {r['rotations']} ({r['lat_rotations']}) "
                f"| {r['errors']} | {side} | {r['watcher_ms_s']:.0f}, {r['others_ms_s']:.0f} | {r['attempts']} |"
            )
    print()
    for n, *phases in rows:
        for label, r in zip(("meshid", "spire-agent INFO", "spire-agent DEBUG"), phases):
            if r["disturbed"]:
                print(
                    f"- {label}, {n} clients: DISTURBED: the rest of the machine used "
                    f"{r['others_ms_s']:.0f} ms/s of CPU in every attempt's window."
                )
            if r["threads_ended"]:
                print(f"- {label}, {n} clients: {r['threads_ended']} threads ended inside the window.")
    print("\nEach rotation, in order: ms from the server's event to the first and the last client")
    print("to receive it.\n")
    for n, me, _, dbg in rows:
        for label, r in (("meshid", me), ("spire-agent DEBUG", dbg)):
            spans = " ".join(f"{a / 1e6:.1f}/{b / 1e6:.1f}" for a, b in r["per_rotation"])
            print(f"- {label}, {n} clients: {spans}")
    neg = sum(r["negative"] for _, *ps in rows for r in ps)
    if neg:
        print(f"\n{neg} latency samples were negative (a client's receipt logged before the server's event).")


if __name__ == "__main__":
    main()
