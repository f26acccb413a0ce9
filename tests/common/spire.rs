//! A real SPIRE deployment on loopback for the tests: SPIRE's own `spire-server` (SQLite
//! datastore, `join_token` node attestation, `memory` key manager, optionally the `disk`
//! UpstreamAuthority) and `spire-agent` (`join_token`, `memory`, the `unix` workload
//! attestor), v1.13.3 built from the Go module proxy by `tests/peers/spire.sh` (or the
//! directory named by `MESHID_SPIRE_DIR`).
//!
//! [`Spire::start`] starts both, waits for their health checks and returns once the agent
//! has attested; [`Spire::entry`] registers a workload (`spire-server entry create`); both
//! processes are stopped by PID when the [`Spire`] is dropped, on every path out of a test.
//!
//! Included with `#[path = "common/spire.rs"] mod spire;`, beside
//! `#[path = "common/peers.rs"] mod peers;` at the test's root.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::peers;

/// The directory holding `spire-server` and `spire-agent`: `MESHID_SPIRE_DIR`, else the
/// peer installed by `tests/peers/spire.sh`.
///
/// # Panics
/// If the peer cannot be installed (with the installer's output): never a silent skip.
pub fn spire_dir() -> PathBuf {
    match std::env::var_os("MESHID_SPIRE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => peers::peer("spire"),
    }
}

/// What SPIRE's server runs with besides the defaults of this harness.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// The trust domain (`example.org` when `None`).
    pub trust_domain: Option<String>,
    /// The `disk` UpstreamAuthority: the CA certificate (chain) file, its key, and the
    /// upstream bundle (the root) when the CA is an intermediate.
    pub upstream: Option<Upstream>,
}

/// SPIRE's `disk` UpstreamAuthority settings.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The CA certificate, then any issuers up to (not including) the root.
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// The root, when `cert` is an intermediate.
    pub bundle: Option<PathBuf>,
}

/// A running SPIRE server and agent; both killed when dropped.
pub struct Spire {
    pub dir: PathBuf,
    pub trust_domain: String,
    /// The agent's Workload API socket.
    pub agent_socket: PathBuf,
    /// The server's admin API socket.
    pub server_socket: PathBuf,
    /// `spiffe://<td>/node`: the parent of every entry this harness registers.
    pub node_id: String,
    bin: PathBuf,
    server: Option<Child>,
    agent: Option<Child>,
}

/// How long SPIRE gets to come up, and an entry to reach the agent.
pub const SPIRE_WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Spire {
    /// Starts a SPIRE server and an agent attested to it with a join token, in a fresh
    /// short directory under the temporary directory named after `tag`.
    ///
    /// # Panics
    /// If either does not come up within [`SPIRE_WAIT`] (with their logs).
    pub fn start(tag: &str, config: &ServerConfig) -> Self {
        // Not $TMPDIR: a long one would push the sockets past the 108-byte limit.
        let dir = PathBuf::from(format!("/tmp/spire-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let trust_domain = config
            .trust_domain
            .clone()
            .unwrap_or_else(|| "example.org".to_owned());
        let mut spire = Self {
            agent_socket: dir.join("agent.sock"),
            server_socket: dir.join("server.sock"),
            node_id: format!("spiffe://{trust_domain}/node"),
            trust_domain,
            bin: spire_dir(),
            dir,
            server: None,
            agent: None,
        };
        let port = free_port();
        spire.start_server(port, config);
        spire.start_agent(port);
        spire
    }

    fn start_server(&mut self, port: u16, config: &ServerConfig) {
        let dir = self.dir.display();
        let mut upstream = String::new();
        if let Some(up) = &config.upstream {
            let _ = write!(
                upstream,
                "  UpstreamAuthority \"disk\" {{\n    plugin_data {{\n      \
                 cert_file_path = \"{}\"\n      key_file_path = \"{}\"\n",
                up.cert.display(),
                up.key.display()
            );
            if let Some(bundle) = &up.bundle {
                let _ = writeln!(
                    upstream,
                    "      bundle_file_path = \"{}\"",
                    bundle.display()
                );
            }
            upstream.push_str("    }\n  }\n");
        }
        let conf = format!(
            r#"server {{
  bind_address = "127.0.0.1"
  bind_port = "{port}"
  socket_path = "{socket}"
  trust_domain = "{td}"
  data_dir = "{dir}/server"
  log_level = "DEBUG"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
}}
plugins {{
  DataStore "sql" {{
    plugin_data {{
      database_type = "sqlite3"
      connection_string = "{dir}/server/datastore.sqlite3"
    }}
  }}
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  KeyManager "memory" {{
    plugin_data {{}}
  }}
{upstream}}}
"#,
            socket = self.server_socket.display(),
            td = self.trust_domain,
        );
        let path = self.dir.join("server.conf");
        std::fs::write(&path, conf).unwrap();
        self.server = Some(self.spawn("spire-server", &path, &[], "server.log"));
        self.wait_healthy("spire-server", &self.server_socket.clone(), "server.log");
    }

    fn start_agent(&mut self, port: u16) {
        let token = self.server_ok(&["token", "generate", "-spiffeID", &self.node_id.clone()]);
        let token = token
            .lines()
            .find_map(|l| l.strip_prefix("Token: "))
            .unwrap_or_else(|| panic!("no token in {token:?}"))
            .trim()
            .to_owned();
        // The agent trusts the server's bundle as SPIRE shows it (PEM), not insecure
        // bootstrap.
        let bundle = self.server_ok(&["bundle", "show"]);
        let bundle_path = self.dir.join("bootstrap.pem");
        std::fs::write(&bundle_path, bundle).unwrap();
        let conf = format!(
            r#"agent {{
  data_dir = "{dir}/agent"
  log_level = "DEBUG"
  server_address = "127.0.0.1"
  server_port = "{port}"
  socket_path = "{socket}"
  trust_bundle_path = "{bundle}"
  trust_domain = "{td}"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  KeyManager "memory" {{
    plugin_data {{}}
  }}
  WorkloadAttestor "unix" {{
    plugin_data {{}}
  }}
}}
"#,
            dir = self.dir.display(),
            socket = self.agent_socket.display(),
            bundle = bundle_path.display(),
            td = self.trust_domain,
        );
        let path = self.dir.join("agent.conf");
        std::fs::write(&path, conf).unwrap();
        self.agent = Some(self.spawn("spire-agent", &path, &["-joinToken", &token], "agent.log"));
        self.wait_healthy("spire-agent", &self.agent_socket.clone(), "agent.log");
    }

    fn spawn(&self, program: &str, config: &Path, extra: &[&str], log: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(log)).unwrap();
        Command::new(self.bin.join(program))
            .arg("run")
            .arg("-config")
            .arg(config)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
    }

    fn wait_healthy(&mut self, program: &str, socket: &Path, log: &str) {
        let deadline = Instant::now() + SPIRE_WAIT;
        loop {
            let out = Command::new(self.bin.join(program))
                .args(["healthcheck", "-socketPath"])
                .arg(socket)
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            let child = if program == "spire-server" {
                self.server.as_mut()
            } else {
                self.agent.as_mut()
            };
            if let Some(Ok(Some(exit))) = child.map(Child::try_wait) {
                panic!("{program} exited ({exit}):\n{}", self.log_tail(log));
            }
            assert!(
                Instant::now() < deadline,
                "{program} not healthy in {SPIRE_WAIT:?}; its log ends with:\n{}",
                self.log_tail(log)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last 30 lines of `server.log` or `agent.log`.
    pub fn log_tail(&self, log: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs `spire-server ARGS -socketPath <server socket>`.
    pub fn server_cmd(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("spire-server"))
            .args(args)
            .arg("-socketPath")
            .arg(&self.server_socket)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// [`Self::server_cmd`], which must succeed; its standard output.
    ///
    /// # Panics
    /// If it fails (with its output and the server's log).
    pub fn server_ok(&self, args: &[&str]) -> String {
        let out = self.server_cmd(args);
        assert!(
            out.status.success(),
            "spire-server {args:?}: {}\n{}{}\n--- server log\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail("server.log")
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The path of `spire-agent`, to run its `api` subcommands.
    pub fn agent_binary(&self) -> PathBuf {
        self.bin.join("spire-agent")
    }

    /// Registers `id` (a path in the trust domain, such as `/frontend`) for this process's
    /// uid (`unix:uid`), its X509-SVIDs living `x509_ttl` seconds (SPIRE backdates them
    /// 10 s and renews at half of the whole), with `extra` arguments to `entry create`.
    /// Returns the SPIFFE ID.
    pub fn entry(&self, path: &str, x509_ttl: u32, extra: &[&str]) -> String {
        let id = format!("spiffe://{}{path}", self.trust_domain);
        let uid = format!("unix:uid:{}", effective_uid());
        let ttl = x509_ttl.to_string();
        let mut args = vec![
            "entry",
            "create",
            "-parentID",
            &self.node_id,
            "-spiffeID",
            &id,
            "-selector",
            &uid,
            "-x509SVIDTTL",
            &ttl,
            "-jwtSVIDTTL",
            "300",
        ];
        args.extend_from_slice(extra);
        self.server_ok(&args);
        id
    }

    /// Waits until the agent serves this process every ID in `ids` (asked with SPIRE's
    /// own `spire-agent api fetch x509`).
    ///
    /// # Panics
    /// After [`SPIRE_WAIT`], with the last answer and the agent's log.
    pub fn wait_for_ids(&self, ids: &[&str]) {
        let deadline = Instant::now() + SPIRE_WAIT;
        loop {
            let out = Command::new(self.agent_binary())
                .args(["api", "fetch", "x509", "-socketPath"])
                .arg(&self.agent_socket)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let served: Vec<&str> = stdout
                .lines()
                .filter_map(|l| l.strip_prefix("SPIFFE ID:"))
                .map(str::trim)
                .collect();
            if out.status.success() && ids.iter().all(|id| served.contains(id)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not serve {ids:?} in {SPIRE_WAIT:?}; it served {served:?}\n{}\n--- agent log\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log_tail("agent.log")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `unix://<agent socket>`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.agent_socket.display())
    }
}

impl Drop for Spire {
    fn drop(&mut self) {
        for child in [self.agent.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The effective uid of this process (the owner of `/proc/self`).
pub fn effective_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").unwrap().uid()
}
