//! `meshid serve agent` attests its callers: real processes under different credentials,
//! each asking over the agent's socket, each served exactly its own identities.
//!
//! - `each_process_gets_exactly_its_own_identities` (root): root with two entries (both, in
//!   file order, the first the default), `nobody` by user name (grpcio), a uid with a
//!   primary and a supplementary group (two group sets, two different entries), the test
//!   executable at a registered path (its `path` and `sha256` entries) and at another
//!   path (the `sha256` entry only), grpcio under the same uid (a different executable:
//!   refused), and a uid with no entry (the `spiffe` crate reports it refused).
//! - `entry_reloads_reach_open_streams` (root): a grpcio stream as `nobody` and a `spiffe`
//!   crate stream as another uid stay open while the entries file changes: added entries
//!   arrive in the next message, removed ones leave it, a broken file is refused and
//!   changes nothing, and a caller's last entry removed ends its stream with
//!   `PermissionDenied`. Changes by atomic rename (seen by the agent's poll) and by an
//!   in-place rewrite the poll cannot see, read on SIGHUP.
//! - `a_caller_that_exits_after_connecting_is_refused`: the connecting process forks and
//!   exits, and its child sends FetchX509SVID over the inherited connection (raw HTTP/2):
//!   refused while the parent is a zombie and once it is reaped; answered in the control
//!   run, where the parent lives.
//! - `a_reused_pid_is_not_attested_as_the_process_that_took_it` (root): the same, and
//!   before the child asks, a process with an identity of its own (`sleep`, by path) is
//!   started with the parent's PID (through `/proc/sys/kernel/ns_last_pid`): refused as
//!   the caller whose PID was reused, not handed that process's identity.
//!
//! Workloads in Rust are this test executable run again (`child_fetch`, with
//! `MESHID_AGENT_CHILD` set), a client of the `spiffe` crate; workloads in Python run
//! `tests/python/agent_grpcio.py` and `tests/python/agent_race.py` with the Python peer.
//! The tests marked root need it (other uids, the next PID); without it they fail, unless
//! `MESHID_SKIP_ROOT_TESTS=1` (then they say they were skipped).

#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/peers.rs"]
mod peers;
#[path = "common/workloads.rs"]
mod workloads;

use workloads::{
    command_as, effective_uid, root_or_skip, sha256_hex, start_agent, Creds, Proc, Scratch, Stray,
    WorldPython, AGENT_WAIT, CHILD_MODE, CHILD_SOCKET,
};

/// How long a workload may take to report.
const WORKLOAD_WAIT: Duration = Duration::from_secs(60);
/// How long a stream stays open at most.
const STREAM_SECONDS: u64 = 120;

const TD: &str = "spiffe://example.org";

/// This executable as a workload (the `child_fetch` test, with the socket in the
/// environment), run as `creds` from `exe`.
fn rust_workload(exe: &Path, creds: &Creds, socket: &Path, mode: &str) -> Command {
    let mut cmd = command_as(creds, exe);
    cmd.args([
        "--exact",
        "child_fetch",
        "--nocapture",
        "--test-threads",
        "1",
        "--quiet",
    ])
    .env_clear()
    .env("PATH", "/usr/bin:/bin")
    .env(CHILD_SOCKET, socket)
    .env(CHILD_MODE, mode)
    .current_dir(socket.parent().unwrap());
    cmd
}

/// The lines a Rust workload printed as a workload (`child ...`, without the prefix),
/// from the lines it printed (the test harness prints others).
fn child_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("child "))
        .map(str::to_owned)
        .collect()
}

/// The next `child ...` line a Rust workload prints (the harness's own lines skipped).
fn next_child_line(proc: &Proc, limit: Duration, others: &[&Proc]) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let line = proc.expect_line_that(
            "from the workload",
            |_| true,
            deadline.saturating_duration_since(Instant::now()),
            others,
        );
        if let Some(line) = line.strip_prefix("child ") {
            return line.to_owned();
        }
    }
}

/// The next `child ...` line, which must be `expected`.
fn expect_child_line(proc: &Proc, expected: &str, limit: Duration, others: &[&Proc]) {
    let got = next_child_line(proc, limit, others);
    assert_eq!(
        got,
        expected,
        "{}\n{}",
        proc.name,
        workloads::transcripts(proc, others)
    );
}

fn id(path: &str) -> String {
    format!("{TD}/{path}")
}

/// What a fetch of these IDs (hint each) prints, in the Rust workload's words.
fn fetched(ids: &[(&str, &str)]) -> Vec<String> {
    let mut out: Vec<String> = ids
        .iter()
        .map(|(path, hint)| format!("svid {} hint={hint}", id(path)))
        .collect();
    if let Some((first, _)) = ids.first() {
        out.push(format!("default {}", id(first)));
    }
    out.push("done".to_owned());
    out
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, in order
fn each_process_gets_exactly_its_own_identities() {
    if !root_or_skip(
        "each_process_gets_exactly_its_own_identities",
        "runs workloads under other uids",
    ) {
        return;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("nobody:x:65534:")),
        "this test needs the user nobody with uid 65534 in /etc/passwd"
    );
    let started = Instant::now();
    let scratch = Scratch::new("ids");
    let registered = scratch.exe("registered");
    let unregistered = scratch.exe("unregistered");
    let sha256 = sha256_hex(&registered);
    let python = WorldPython::new(&scratch);
    let entries = format!(
        r#"
[[entry]]
spiffe_id = "{TD}/root/first"
selectors = ["unix:uid:0"]
hint = "first"

[[entry]]
spiffe_id = "{TD}/exe/by-path"
selectors = ["unix:path:{registered}"]

[[entry]]
spiffe_id = "{TD}/nobody"
selectors = ["unix:user:nobody"]

[[entry]]
spiffe_id = "{TD}/groups/g3200"
selectors = ["unix:gid:3100", "unix:supplementary_gid:3200"]

[[entry]]
spiffe_id = "{TD}/root/second"
selectors = ["unix:user:root", "unix:gid:0"]
hint = "second"

[[entry]]
spiffe_id = "{TD}/exe/by-sha256"
selectors = ["unix:sha256:{sha256}", "unix:uid:2002"]

[[entry]]
spiffe_id = "{TD}/groups/g3999"
selectors = ["unix:gid:3100", "unix:supplementary_gid:3999"]
"#,
        registered = registered.display()
    );
    scratch.write_entries(&entries);
    let agent = start_agent(&scratch, 7);
    let socket = scratch.socket();
    let this = std::env::current_exe().unwrap();

    let root = Creds::new(0, 0);
    let member = Creds::new(3000, 3100).groups(&[3300, 3200]);
    let other_member = Creds::new(3000, 3100).groups(&[3999]);
    let exe_user = Creds::new(2002, 2002);
    let stranger = Creds::new(4321, 4321);
    let nobody = Creds::new(65534, 65534);
    // Each workload: what it is, who it must say it runs as (root: as this test does),
    // and what it must print after that.
    let rust = [
        (
            "root, this executable",
            &this,
            &root,
            fetched(&[("root/first", "first"), ("root/second", "second")]),
        ),
        (
            "uid 3000 gid 3100 groups 3200,3300",
            &unregistered,
            &member,
            fetched(&[("groups/g3200", "")]),
        ),
        (
            "uid 3000 gid 3100 groups 3999",
            &unregistered,
            &other_member,
            fetched(&[("groups/g3999", "")]),
        ),
        (
            "uid 2002, the registered path",
            &registered,
            &exe_user,
            fetched(&[("exe/by-path", ""), ("exe/by-sha256", "")]),
        ),
        (
            "uid 2002, the same executable at another path",
            &unregistered,
            &exe_user,
            fetched(&[("exe/by-sha256", "")]),
        ),
        (
            "uid 4321, no entry",
            &unregistered,
            &stranger,
            vec!["refused no-identity-issued".to_owned()],
        ),
    ];
    let python_runs = [
        (
            "nobody",
            &nobody,
            vec![format!("svid {} hint=", id("nobody")), "done".to_owned()],
        ),
        (
            "uid 2002, Python: not the hashed executable",
            &exe_user,
            vec!["status PERMISSION_DENIED no identity issued".to_owned()],
        ),
    ];
    let check = |mut proc: Proc, rust: bool, creds: &Creds, expected: &[String]| {
        let lines = proc.finish(WORKLOAD_WAIT, &[&agent]);
        let mut said = if rust { child_lines(&lines) } else { lines };
        let context = || workloads::transcripts(&proc, &[&agent]);
        assert!(
            said.first().is_some_and(|l| l.starts_with("who ")),
            "{}: no `who` line\n{}",
            proc.name,
            context()
        );
        let who = said.remove(0);
        if creds.uid != 0 {
            assert_eq!(
                who,
                creds.who(),
                "{}: not run as intended\n{}",
                proc.name,
                context()
            );
        }
        assert_eq!(said, expected, "{}\n{}", proc.name, context());
    };
    // The first alone: the agent hashes this executable once (a few seconds in a debug
    // build), and the others find it cached rather than hashing it each at once.
    let mut runs = Vec::new();
    for (name, exe, creds, expected) in rust {
        let cmd = rust_workload(exe, creds, &socket, "fetch");
        let proc = Proc::spawn(format!("{name} (spiffe crate)"), cmd);
        if runs.is_empty() {
            check(proc, true, creds, &expected);
            runs.push(None);
        } else {
            runs.push(Some((proc, true, creds, expected)));
        }
    }
    for (name, creds, expected) in python_runs {
        let mut cmd = python.command(creds, Some("agent_grpcio.py"));
        cmd.arg("fetch").arg(&socket);
        let proc = Proc::spawn(format!("{name} (grpcio)"), cmd);
        runs.push(Some((proc, false, creds, expected)));
    }
    let count = runs.len();
    for (proc, rust, creds, expected) in runs.into_iter().flatten() {
        check(proc, rust, creds, &expected);
    }
    eprintln!("{count} workloads checked in {:?}", started.elapsed());
}

/// The entries of the reload test: `(path, selector)` each, this order.
fn reload_entries(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(path, selector)| {
            format!("[[entry]]\nspiffe_id = \"{TD}/reload/{path}\"\nselectors = [\"{selector}\"]\n")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ids(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| format!("{TD}/reload/{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, in order
fn entry_reloads_reach_open_streams() {
    if !root_or_skip(
        "entry_reloads_reach_open_streams",
        "runs workloads under other uids",
    ) {
        return;
    }
    let started = Instant::now();
    let scratch = Scratch::new("reload");
    let exe = scratch.exe("workload");
    let python = WorldPython::new(&scratch);
    let (bystander, py_a, py_b, rs_a, rs_b) = (
        ("bystander", "unix:uid:9999"),
        ("py-a", "unix:uid:65534"),
        ("py-b", "unix:user:nobody"),
        ("rs-a", "unix:uid:2500"),
        ("rs-b", "unix:uid:2500"),
    );
    scratch.write_entries(&reload_entries(&[bystander, py_a, rs_a]));
    let mut agent = start_agent(&scratch, 3);
    let socket = scratch.socket();
    let nobody = Creds::new(65534, 65534);
    let rust_uid = Creds::new(2500, 2500);

    let mut cmd = python.command(&nobody, Some("agent_grpcio.py"));
    cmd.arg("stream")
        .arg(&socket)
        .arg(STREAM_SECONDS.to_string());
    let mut py = Proc::spawn("grpcio stream as nobody", cmd);
    let mut rs = Proc::spawn(
        "spiffe crate stream as uid 2500",
        rust_workload(&exe, &rust_uid, &socket, "stream"),
    );
    py.expect_line(&nobody.who(), WORKLOAD_WAIT, &[&agent]);
    expect_child_line(&rs, &rust_uid.who(), WORKLOAD_WAIT, &[&agent]);
    py.expect_line(
        &format!("message {}", ids(&["py-a"])),
        WORKLOAD_WAIT,
        &[&agent],
    );
    expect_child_line(
        &rs,
        &format!("message {}", ids(&["rs-a"])),
        WORKLOAD_WAIT,
        &[&agent],
    );

    // Added (atomic rename, seen by the poll): each in its own next message, in file order.
    scratch.write_entries(&reload_entries(&[bystander, py_a, py_b, rs_b, rs_a]));
    agent.expect_line(
        "entries reloaded (changed on disk): 2 added, 0 removed, 3 kept",
        AGENT_WAIT,
        &[&py, &rs],
    );
    py.expect_line(
        &format!("message {}", ids(&["py-a", "py-b"])),
        WORKLOAD_WAIT,
        &[&agent, &rs],
    );
    expect_child_line(
        &rs,
        &format!("message {}", ids(&["rs-b", "rs-a"])),
        WORKLOAD_WAIT,
        &[&agent, &py],
    );

    // Removed, in a rewrite the poll cannot see: only SIGHUP reads it.
    scratch.rewrite_entries_unseen(&reload_entries(&[bystander, py_a, rs_b, rs_a]));
    agent.signal("HUP");
    agent.expect_line(
        "entries reloaded (SIGHUP): 0 added, 1 removed, 4 kept",
        AGENT_WAIT,
        &[&py, &rs],
    );
    py.expect_line(
        &format!("message {}", ids(&["py-a"])),
        WORKLOAD_WAIT,
        &[&agent, &rs],
    );

    // A broken file: refused, nothing changes (no stream hears of it: checked by the next
    // line each prints), and what is in force is still served to a new caller.
    let broken = format!(
        "{}\n[[entry]]\nspiffe_id = \"{TD}/reload/k8s\"\nselectors = [\"k8s:ns:default\"]\n",
        reload_entries(&[bystander, py_a, rs_b, rs_a])
    );
    scratch.write_entries(&broken);
    let refused = agent.expect_line_that(
        "refusing the broken file",
        |l| {
            l.starts_with(&format!(
                "entries refused (changed on disk): {}: line ",
                scratch.entries().display()
            )) && l.ends_with("unknown selector type \"k8s\" (known: unix)")
        },
        AGENT_WAIT,
        &[&py, &rs],
    );
    let mut fresh = Proc::spawn(
        "spiffe crate fetch as uid 2500, after the broken file",
        rust_workload(&exe, &rust_uid, &socket, "fetch"),
    );
    let said = child_lines(&fresh.finish(WORKLOAD_WAIT, &[&agent]));
    let mut expected = vec![rust_uid.who()];
    expected.extend(fetched(&[("reload/rs-b", ""), ("reload/rs-a", "")]));
    assert_eq!(
        said,
        expected,
        "{}",
        workloads::transcripts(&fresh, &[&agent])
    );

    // The Rust workload's entries go: its stream ends, refused; the other stream hears
    // nothing.
    scratch.write_entries(&reload_entries(&[bystander, py_a]));
    agent.expect_line(
        "entries reloaded (changed on disk): 0 added, 2 removed, 2 kept",
        AGENT_WAIT,
        &[&py, &rs],
    );
    expect_child_line(
        &rs,
        "stream-error refused no-identity-issued",
        WORKLOAD_WAIT,
        &[&agent, &py],
    );
    let rest = rs.finish(WORKLOAD_WAIT, &[&agent]);
    assert!(
        child_lines(&rest).is_empty(),
        "{}",
        workloads::transcripts(&rs, &[&agent])
    );

    // The Python workload's last entry goes: its stream ends with PermissionDenied.
    scratch.write_entries(&reload_entries(&[bystander]));
    agent.expect_line(
        "entries reloaded (changed on disk): 0 added, 1 removed, 1 kept",
        AGENT_WAIT,
        &[&py, &rs],
    );
    py.expect_line(
        "status PERMISSION_DENIED no identity issued",
        WORKLOAD_WAIT,
        &[&agent, &rs],
    );
    let rest = py.finish(WORKLOAD_WAIT, &[&agent]);
    assert!(
        rest.is_empty(),
        "{}",
        workloads::transcripts(&py, &[&agent])
    );

    // Nothing else was said: one line per reload, and the refusal.
    agent.signal("TERM");
    let rest = agent.finish(AGENT_WAIT, &[]);
    assert_eq!(
        rest,
        ["stopping"],
        "after {refused}\n{}",
        agent.transcript()
    );
    eprintln!("reloads checked in {:?}", started.elapsed());
}

/// One run of `tests/python/agent_race.py` in `mode` (its parent connects to the agent and
/// forks; its child asks, over the parent's connection): checks what the child says of the
/// parent's PID before and after asking (`state`), and returns the parent's PID and the
/// outcome. In `reaped` and `reused` modes the parent is reaped as soon as it exits; in
/// `reused` mode `sleep` (`taker`) is then started with the parent's PID.
fn race(
    agent: &Proc,
    scratch: &Scratch,
    mode: &str,
    state: &str,
    taker: Option<&Path>,
) -> (u32, String) {
    let python = peers::peer("python").join("bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/agent_race.py");
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(scratch.socket())
        .arg(mode)
        .args(taker.map(|_| "sleep"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let mut parent = Proc::spawn(format!("agent_race.py {mode}"), cmd);
    let parent_pid = parent.pid();
    parent.expect_line(&format!("parent {parent_pid}"), WORKLOAD_WAIT, &[agent]);
    let child = parent.expect_line_that(
        "naming the child",
        |l| l.starts_with("child "),
        WORKLOAD_WAIT,
        &[agent],
    );
    let mut stray = Stray(child["child ".len()..].parse().ok());
    // Zombie: not reaped until the child has reported (it asks while the parent is one).
    if mode == "reaped" || mode == "reused" {
        parent
            .wait(WORKLOAD_WAIT)
            .unwrap_or_else(|| panic!("the parent did not exit\n{}", parent.transcript()));
    }
    let _taker = taker.map(|sleep| spawn_with_pid(parent_pid, sleep));
    for _ in 0..2 {
        parent.expect_line(&format!("parent state {state}"), WORKLOAD_WAIT, &[agent]);
    }
    let outcome = parent.expect_line_that("with the outcome", |_| true, WORKLOAD_WAIT, &[agent]);
    let rest = parent.finish(WORKLOAD_WAIT, &[agent]);
    assert!(
        rest.is_empty(),
        "{}",
        workloads::transcripts(&parent, &[agent])
    );
    stray.0 = None; // the child closed the output: it has exited
    (parent_pid, outcome)
}

/// `sleep 60` as the process with PID `pid` (free now), killed when dropped: the kernel's
/// last PID set to `pid - 1` (`/proc/sys/kernel/ns_last_pid`, which needs CAP_SYS_ADMIN),
/// then a spawn; again while another process takes it first (for at most 30 s).
fn spawn_with_pid(pid: u32, sleep: &Path) -> Proc {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .unwrap_or_else(|e| panic!("setting /proc/sys/kernel/ns_last_pid: {e}"));
        let mut cmd = Command::new(sleep);
        cmd.arg("60");
        let taker = Proc::spawn(format!("{} taking PID {pid}", sleep.display()), cmd);
        if taker.pid() == pid {
            return taker;
        }
        got.push(taker.pid());
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("could not start a process with PID {pid} in 30 s (got PIDs {got:?})");
}

#[test]
fn a_caller_that_exits_after_connecting_is_refused() {
    let started = Instant::now();
    let scratch = Scratch::new("race");
    let uid = effective_uid();
    scratch.write_entries(&format!(
        "[[entry]]\nspiffe_id = \"{TD}/race/caller\"\nselectors = [\"unix:uid:{uid}\"]\n"
    ));
    let agent = start_agent(&scratch, 1);
    // The control: the parent lives, and the child is answered over its connection.
    let (_, outcome) = race(&agent, &scratch, "alive", "alive", None);
    assert_eq!(
        outcome,
        format!("answered {TD}/race/caller"),
        "{}",
        agent.transcript()
    );
    for (mode, state) in [("zombie", "zombie"), ("reaped", "gone")] {
        let (pid, outcome) = race(&agent, &scratch, mode, state, None);
        assert_eq!(
            outcome,
            format!(
                "grpc-status 7 no identity issued: process {pid} has exited (or is a zombie) since it connected"
            ),
            "{mode}\n{}",
            agent.transcript()
        );
    }
    eprintln!("exit races checked in {:?}", started.elapsed());
}

#[test]
fn a_reused_pid_is_not_attested_as_the_process_that_took_it() {
    if !root_or_skip(
        "a_reused_pid_is_not_attested_as_the_process_that_took_it",
        "sets the PID the kernel hands out next (/proc/sys/kernel/ns_last_pid)",
    ) {
        return;
    }
    let started = Instant::now();
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .iter()
        .find_map(|p| std::fs::canonicalize(p).ok())
        .expect("this test needs sleep (coreutils)");
    let scratch = Scratch::new("reuse");
    // The caller is Python as root; whatever takes its PID is `sleep` as root, which has an
    // identity of its own: an agent attesting the PID would hand it to the caller.
    scratch.write_entries(&format!(
        "[[entry]]\nspiffe_id = \"{TD}/race/caller\"\nselectors = [\"unix:uid:0\"]\n\n\
         [[entry]]\nspiffe_id = \"{TD}/race/pid-taker\"\nselectors = [\"unix:uid:0\", \"unix:path:{}\"]\n",
        sleep.display()
    ));
    let agent = start_agent(&scratch, 2);
    let (_, outcome) = race(&agent, &scratch, "alive", "alive", None);
    assert_eq!(
        outcome,
        format!("answered {TD}/race/caller"),
        "{}",
        agent.transcript()
    );
    let (pid, outcome) = race(&agent, &scratch, "reused", "alive sleep", Some(&sleep));
    assert_eq!(
        outcome,
        format!(
            "grpc-status 7 no identity issued: process {pid} is not the one that connected: its start time differs (the PID was reused)"
        ),
        "{}",
        agent.transcript()
    );
    eprintln!("PID reuse checked in {:?}", started.elapsed());
}

/// Not a test on its own: the Rust workload the tests above run (this executable, with
/// `MESHID_AGENT_CHILD` set to the agent's socket). Prints `child who ...` (its effective
/// uid, gid and supplementary groups from /proc), then in `fetch` mode the X.509 context's
/// SVIDs (`child svid <id> hint=<hint>`, in order), `child default <id>` and `child done`,
/// or `child refused no-identity-issued` / `child error <error>`; in `stream` mode
/// `child message <id>,<id>...` for each message until the stream ends (`child ended`,
/// `child stream-error ...`) or its time is up (`child timeout`).
#[test]
fn child_fetch() {
    let Some(socket) = std::env::var_os(CHILD_SOCKET) else {
        return;
    };
    let mode = std::env::var(CHILD_MODE).unwrap_or_default();
    println!("child {}", who());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let endpoint = format!("unix://{}", Path::new(&socket).display());
        let limit = Duration::from_secs(20);
        let client =
            match tokio::time::timeout(limit, spiffe::WorkloadApiClient::connect_to(&endpoint))
                .await
            {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => return println!("child {}", described(&e)),
                Err(_) => return println!("child error no connection within {limit:?}"),
            };
        if mode == "stream" {
            stream(&client).await;
            return;
        }
        match tokio::time::timeout(limit, client.fetch_x509_context()).await {
            Ok(Ok(context)) => {
                for svid in context.svids() {
                    println!(
                        "child svid {} hint={}",
                        svid.spiffe_id(),
                        svid.hint().unwrap_or_default()
                    );
                }
                if let Some(svid) = context.default_svid() {
                    println!("child default {}", svid.spiffe_id());
                }
                println!("child done");
            }
            Ok(Err(e)) => println!("child {}", described(&e)),
            Err(_) => println!("child error no answer within {limit:?}"),
        }
    });
}

async fn stream(client: &spiffe::WorkloadApiClient) {
    use tokio_stream::StreamExt as _;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(STREAM_SECONDS);
    let mut contexts = match client.stream_x509_contexts().await {
        Ok(contexts) => contexts,
        Err(e) => return println!("child stream-error {}", described(&e)),
    };
    loop {
        match tokio::time::timeout_at(deadline, contexts.next()).await {
            Ok(Some(Ok(context))) => {
                let ids: Vec<String> = context
                    .svids()
                    .iter()
                    .map(|s| s.spiffe_id().to_string())
                    .collect();
                println!("child message {}", ids.join(","));
            }
            Ok(Some(Err(e))) => return println!("child stream-error {}", described(&e)),
            Ok(None) => return println!("child ended"),
            Err(_) => return println!("child timeout"),
        }
    }
}

fn described(e: &spiffe::WorkloadApiError) -> String {
    match e {
        spiffe::WorkloadApiError::NoIdentityIssued => "refused no-identity-issued".to_owned(),
        e => format!("error {e}"),
    }
}

/// `who uid=<euid> gid=<egid> groups=<sorted supplementary gids>`, from /proc/self/status.
fn who() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_ascii_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    };
    let mut groups = field("Groups:");
    groups.sort_unstable();
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    format!(
        "who uid={} gid={} groups={}",
        field("Uid:")[1],
        field("Gid:")[1],
        groups.join(",")
    )
}
