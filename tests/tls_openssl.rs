//! openssl interop for meshid::tls (being written).
