//! Where the Workload API listens: `unix:///abs/path` or `tcp://IP:port`
//! ([SPIFFE Workload Endpoint §4](https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Workload_Endpoint.md#4-locating-the-endpoint)).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::WorkloadApiError;

/// The environment variable that names the endpoint.
pub const ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";

/// A Workload API endpoint address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Endpoint {
    /// A Unix domain socket at an absolute path.
    Unix(PathBuf),
    /// A TCP address given as an IP literal and a port.
    Tcp(SocketAddr),
}

/// Why an endpoint address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointProblem {
    /// Neither `unix:` nor `tcp:`.
    Scheme,
    /// A `unix:` address without an absolute path.
    UnixPathNotAbsolute,
    /// A `unix:` address with a host (`unix://host/path`).
    UnixHost,
    /// A `tcp:` address that is not `tcp://IP:port` (host names are not allowed).
    TcpNotIpAndPort,
    /// A query, fragment or user info.
    Extra,
    /// The environment variable is not set.
    NotSet,
}

impl fmt::Display for EndpointProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Scheme => "the scheme must be unix or tcp",
            Self::UnixPathNotAbsolute => "a unix address needs an absolute path",
            Self::UnixHost => "a unix address takes no host (use unix:///path)",
            Self::TcpNotIpAndPort => "a tcp address must be tcp://IP:port with an IP literal",
            Self::Extra => "query, fragment and user info are not allowed",
            Self::NotSet => "SPIFFE_ENDPOINT_SOCKET is not set",
        })
    }
}

impl Endpoint {
    /// Parses `unix:///abs/path` (also `unix:/abs/path`) or `tcp://IP:port`; anything
    /// else is [`WorkloadApiError::InvalidEndpoint`] saying what is wrong.
    ///
    /// ```
    /// use meshid::workload::Endpoint;
    /// assert!(matches!(Endpoint::parse("unix:///run/spire/agent.sock"), Ok(Endpoint::Unix(_))));
    /// assert!(matches!(Endpoint::parse("tcp://127.0.0.1:8081"), Ok(Endpoint::Tcp(_))));
    /// assert!(Endpoint::parse("tcp://localhost:8081").is_err()); // an IP literal only
    /// assert!(Endpoint::parse("/run/spire/agent.sock").is_err()); // a scheme is required
    /// ```
    pub fn parse(address: &str) -> Result<Self, WorkloadApiError> {
        let refuse = |problem| WorkloadApiError::InvalidEndpoint {
            endpoint: address.to_owned(),
            problem,
        };
        if address.contains(['?', '#']) {
            return Err(refuse(EndpointProblem::Extra));
        }
        if let Some(rest) = address.strip_prefix("unix:") {
            let path = match rest.strip_prefix("//") {
                Some(after) if after.starts_with('/') => after,
                Some(_) => return Err(refuse(EndpointProblem::UnixHost)),
                None => rest,
            };
            if !path.starts_with('/') {
                return Err(refuse(EndpointProblem::UnixPathNotAbsolute));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = address.strip_prefix("tcp://") {
            if rest.contains('@') {
                return Err(refuse(EndpointProblem::Extra));
            }
            return rest
                .parse()
                .map(Self::Tcp)
                .map_err(|_| refuse(EndpointProblem::TcpNotIpAndPort));
        }
        if address.starts_with("tcp:") {
            return Err(refuse(EndpointProblem::TcpNotIpAndPort));
        }
        Err(refuse(EndpointProblem::Scheme))
    }

    /// The endpoint named by `SPIFFE_ENDPOINT_SOCKET`.
    pub fn from_env() -> Result<Self, WorkloadApiError> {
        match std::env::var(ENDPOINT_ENV) {
            Ok(address) if !address.is_empty() => Self::parse(&address),
            _ => Err(WorkloadApiError::InvalidEndpoint {
                endpoint: String::new(),
                problem: EndpointProblem::NotSet,
            }),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses_as_the_spec_says() {
        let ok = [
            ("unix:///tmp/agent.sock", "unix:///tmp/agent.sock"),
            ("unix:/tmp/agent.sock", "unix:///tmp/agent.sock"),
            ("tcp://127.0.0.1:8081", "tcp://127.0.0.1:8081"),
            ("tcp://[::1]:8081", "tcp://[::1]:8081"),
        ];
        for (input, shown) in ok {
            assert_eq!(Endpoint::parse(input).unwrap().to_string(), shown);
        }
        let bad = [
            ("/tmp/agent.sock", EndpointProblem::Scheme),
            ("http://127.0.0.1:1", EndpointProblem::Scheme),
            ("unix://host/tmp/a.sock", EndpointProblem::UnixHost),
            ("unix:tmp/a.sock", EndpointProblem::UnixPathNotAbsolute),
            ("unix:///tmp/a.sock?x=1", EndpointProblem::Extra),
            ("tcp://localhost:8081", EndpointProblem::TcpNotIpAndPort),
            ("tcp://127.0.0.1", EndpointProblem::TcpNotIpAndPort),
            (
                "tcp://127.0.0.1:8081/path",
                EndpointProblem::TcpNotIpAndPort,
            ),
            ("tcp:127.0.0.1:8081", EndpointProblem::TcpNotIpAndPort),
            ("tcp://u@127.0.0.1:8081", EndpointProblem::Extra),
            ("", EndpointProblem::Scheme),
        ];
        for (input, expected) in bad {
            match Endpoint::parse(input) {
                Err(WorkloadApiError::InvalidEndpoint { problem, .. }) => {
                    assert_eq!(problem, expected, "{input}");
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }
}
