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
