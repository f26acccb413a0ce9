"""The PID race against `meshid serve agent` (run by tests/agent.rs): a connection whose
process exits is used by another process.

Usage: agent_race.py <unix socket> <alive|zombie|reaped|reused> [command name]

This process connects to the agent's socket and starts HTTP/2 (the `h2` package) until
the server's SETTINGS arrive, so the agent has accepted the connection and recorded this
process as its caller (SO_PEERCRED). Then it forks, and the child alone speaks from then
on, over the inherited socket and the copied HTTP/2 state: one FetchX509SVID request with
the security header.

- alive: the parent waits for the child (the control: the caller still lives);
- zombie: the parent exits at once, and the child sends when it has been reparented, while
  the parent is still a zombie (the test reaps it only after the child has reported);
- reaped: the parent exits at once, and the child sends when /proc has no entry for the
  parent any more (the test reaps it at once);
- reused: as reaped, then the child sends when the parent's PID names a new process with
  the command name given (the test starts one that takes the PID).

Prints `parent <pid>`, then from the child `child <pid>`, `parent state <alive|zombie|gone>`
(the state of the process with the parent's PID, and in reused mode its command name)
before and after the request, and the outcome: `answered <id>,<id>,...` (the first
message; the stream is then cancelled) or `grpc-status <code> <message>`. Exits 0 when it
could tell; 1 (with `FAILED: ...` on stderr) otherwise.
"""

import os
import socket
import struct
import sys
import time
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.events

WAIT = 10.0
METHOD = b"/SpiffeWorkloadAPI/FetchX509SVID"


class Failed(Exception):
    pass


def parent_state(pid):
    """What /proc says of PID: `gone`, `zombie`, `dead`, or else `alive`."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):  # gone, or going
        return "gone"
    state = stat[stat.rfind(")") + 2]
    return {"Z": "zombie", "X": "dead", "x": "dead"}.get(state, "alive")


def command_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):  # gone, or going
        return None


def wait_until(cond, what, limit=WAIT):
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise Failed(f"waited {limit}s for {what}")
        time.sleep(0.005)


def recv(sock, conn):
    data = sock.recv(65536)
    if not data:
        raise Failed("the server closed the connection")
    return conn.receive_data(data)


def request(sock, conn):
    """One FetchX509SVID on stream 1: its first message's IDs, or its grpc-status."""
    from spiffe._proto import workload_pb2

    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [
        (":method", "POST"), (":scheme", "http"), (":path", METHOD),
        (":authority", "localhost"), ("content-type", "application/grpc"),
        ("te", "trailers"), ("workload.spiffe.io", "true"),
    ])
    conn.send_data(stream, struct.pack(">BI", 0, 0), end_stream=True)
    sock.sendall(conn.data_to_send())
    body = b""
    while True:
        for event in recv(sock, conn):
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                headers = dict(event.headers)
                if b"grpc-status" in headers:
                    message = urllib.parse.unquote(headers.get(b"grpc-message", b"").decode())
                    return f"grpc-status {headers[b'grpc-status'].decode()} {message}"
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                body += event.data
                if len(body) >= 5 and len(body) >= 5 + struct.unpack(">I", body[1:5])[0]:
                    size = struct.unpack(">I", body[1:5])[0]
                    response = workload_pb2.X509SVIDResponse.FromString(body[5 : 5 + size])
                    conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
                    sock.sendall(conn.data_to_send())
                    return "answered " + ",".join(s.spiffe_id for s in response.svids)
            elif isinstance(event, h2.events.StreamReset):
                raise Failed(f"RST_STREAM {event.error_code!r}")
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise Failed(f"GOAWAY {event.error_code!r}")
        sock.sendall(conn.data_to_send())


def child(sock, conn, parent, mode, taker):
    print(f"child {os.getpid()}", flush=True)
    if mode != "alive":
        wait_until(lambda: os.getppid() != parent, "the parent to exit")
    if mode == "reaped":
        wait_until(lambda: parent_state(parent) == "gone", "the parent to be reaped")
    if mode == "reused":
        # The parent's command name is not the taker's. The test tries for up to 30 s.
        wait_until(lambda: command_name(parent) == taker, f"{taker} to take PID {parent}", 40)

    def state():
        name = f" {command_name(parent)}" if mode == "reused" else ""
        return f"parent state {parent_state(parent)}{name}"

    print(state(), flush=True)
    outcome = request(sock, conn)
    print(state(), flush=True)
    print(outcome, flush=True)


def main():
    path, mode = sys.argv[1:3]
    taker = sys.argv[3] if len(sys.argv) > 3 else None
    if mode not in ("alive", "zombie", "reaped", "reused"):
        raise SystemExit(f"unknown mode {mode!r}")
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    conn = h2.connection.H2Connection(config=config)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    try:
        sock.connect(path)
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        # The server's SETTINGS: it has accepted this connection.
        while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in recv(sock, conn)):
            pass
        sock.sendall(conn.data_to_send())  # the SETTINGS ACK, before the state is copied
    except (Failed, OSError) as e:
        print(f"FAILED: before the fork: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    parent = os.getpid()
    print(f"parent {parent}", flush=True)
    pid = os.fork()
    if pid != 0:
        if mode == "alive":
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status))
        os._exit(0)
    try:
        child(sock, conn, parent, mode, taker)
    except (Failed, OSError) as e:
        print(f"FAILED: in the child: {e}", file=sys.stderr, flush=True)
        os._exit(1)
    os._exit(0)


if __name__ == "__main__":
    main()
