//! The SPIFFE Workload API messages (`workload.proto` of the SPIFFE project), written with
//! prost derives so that no `protoc` is needed to build. Field names and tags follow the
//! published proto exactly; they are the wire contract.

#![allow(missing_docs)] // each message is documented by the proto it mirrors

use std::collections::HashMap;

/// The gRPC service name.
pub const SERVICE: &str = "SpiffeWorkloadAPI";
/// `FetchX509SVID`: server stream of [`X509SvidResponse`].
pub const FETCH_X509_SVID: &str = "/SpiffeWorkloadAPI/FetchX509SVID";
/// `FetchX509Bundles`: server stream of [`X509BundlesResponse`].
pub const FETCH_X509_BUNDLES: &str = "/SpiffeWorkloadAPI/FetchX509Bundles";
/// `FetchJWTSVID`: unary [`JwtSvidResponse`].
pub const FETCH_JWT_SVID: &str = "/SpiffeWorkloadAPI/FetchJWTSVID";
/// `FetchJWTBundles`: server stream of [`JwtBundlesResponse`].
pub const FETCH_JWT_BUNDLES: &str = "/SpiffeWorkloadAPI/FetchJWTBundles";
/// `ValidateJWTSVID`: unary [`ValidateJwtSvidResponse`].
pub const VALIDATE_JWT_SVID: &str = "/SpiffeWorkloadAPI/ValidateJWTSVID";
/// The metadata key every Workload API call must carry, with the value `true`.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct X509SvidRequest {}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct X509SvidResponse {
    #[prost(message, repeated, tag = "1")]
    pub svids: Vec<X509SvidMessage>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub crl: Vec<Vec<u8>>,
    #[prost(map = "string, bytes", tag = "3")]
    pub federated_bundles: HashMap<String, Vec<u8>>,
}

/// `X509SVID`: one identity. `x509_svid` is the chain as concatenated DER, leaf first;
/// `x509_svid_key` the PKCS#8 DER key; `bundle` the trust domain's roots, concatenated DER.
///
/// `x509_svid_key` is zeroized when the message is dropped: the server's copy once tonic
/// has encoded it, the client's once the message is decoded into an
/// [`X509Context`](super::X509Context) (whose `PrivateKey` zeroizes its own copy). The
/// encoded bytes are not: tonic's, hyper's and h2's buffers on either side (and the
/// transient copies prost makes while decoding) are freed without being zeroized, and
/// neither are the kernel's socket buffers. Being `Drop`, the message cannot be taken
/// apart by moving its fields out; clone them instead.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct X509SvidMessage {
    #[prost(string, tag = "1")]
    pub spiffe_id: String,
    #[prost(bytes = "vec", tag = "2")]
    pub x509_svid: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub x509_svid_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub bundle: Vec<u8>,
    #[prost(string, tag = "5")]
    pub hint: String,
}

impl Drop for X509SvidMessage {
    fn drop(&mut self) {
        self.wipe_key();
    }
}

impl X509SvidMessage {
    /// Zeroizes (and empties) `x509_svid_key`, as dropping the message does.
    pub fn wipe_key(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.x509_svid_key);
    }
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct X509BundlesRequest {}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct X509BundlesResponse {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub crl: Vec<Vec<u8>>,
    #[prost(map = "string, bytes", tag = "2")]
    pub bundles: HashMap<String, Vec<u8>>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct JwtSvidRequest {
    #[prost(string, repeated, tag = "1")]
    pub audience: Vec<String>,
    #[prost(string, tag = "2")]
    pub spiffe_id: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct JwtSvidResponse {
    #[prost(message, repeated, tag = "1")]
    pub svids: Vec<JwtSvidMessage>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct JwtSvidMessage {
    #[prost(string, tag = "1")]
    pub spiffe_id: String,
    #[prost(string, tag = "2")]
    pub svid: String,
    #[prost(string, tag = "3")]
    pub hint: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct JwtBundlesRequest {}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct JwtBundlesResponse {
    #[prost(map = "string, bytes", tag = "1")]
    pub bundles: HashMap<String, Vec<u8>>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ValidateJwtSvidRequest {
    #[prost(string, tag = "1")]
    pub audience: String,
    #[prost(string, tag = "2")]
    pub svid: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ValidateJwtSvidResponse {
    #[prost(string, tag = "1")]
    pub spiffe_id: String,
    #[prost(message, optional, tag = "2")]
    pub claims: Option<::prost_types::Struct>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn a_message_s_key_is_wiped_and_dropping_wipes_it() {
        let key = b"-- not a real key, but secret --".to_vec();
        let mut message = X509SvidMessage {
            spiffe_id: "spiffe://example.org/w".into(),
            x509_svid: vec![1, 2, 3],
            x509_svid_key: key.clone(),
            bundle: vec![4, 5],
            hint: String::new(),
        };
        let encoded = message.encode_to_vec();
        let mut decoded = X509SvidMessage::decode(encoded.as_slice()).unwrap();
        assert_eq!(decoded.x509_svid_key, key);
        decoded.wipe_key();
        assert!(decoded.x509_svid_key.is_empty());
        assert_eq!(decoded.x509_svid, [1, 2, 3], "only the key is wiped");
        message.wipe_key();
        assert!(message.x509_svid_key.is_empty());
    }
}
