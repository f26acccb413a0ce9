//! [`SpiffeBundle`]: the SPIFFE bundle document, a JWK Set
//! ([SPIFFE Trust Domain and Bundle §4]).
//!
//! [SPIFFE Trust Domain and Bundle §4]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#4-spiffe-bundle-format

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use der::Decode;
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value};
use x509_cert::Certificate;

use super::jwk;
use super::x509::dedup;
use super::{BundleError, BundleSource, X509Bundle, MAX_INPUT_LEN};
use crate::TrustDomain;

const X509_SVID: &str = "x509-svid";
const JWT_SVID: &str = "jwt-svid";

/// How deep a bundle document may nest arrays and objects. A SPIFFE bundle needs 4
/// (document, `keys`, JWK, `x5c`); the rest is headroom for extension members.
const MAX_DEPTH: usize = 32;

/// A SPIFFE bundle: the X.509 and JWT authorities of one trust domain, with the
/// document's sequence number and refresh hint ([SPIFFE Trust Domain and Bundle §4]).
///
/// The trust domain is not part of the document; the caller says which one it is for.
///
/// # Reading rules
///
/// - `keys` MUST be present and be an array; it may be empty (§4.1.3).
/// - An entry whose `use` is neither `x509-svid` nor `jwt-svid` (or is missing), or whose
///   `kty` is not `EC`, `RSA` or `OKP`, is ignored (§4.2.1, §4.2.2).
/// - An `x509-svid` entry holds exactly one certificate in `x5c`, padded standard base64
///   of a well-formed DER certificate (X509-SVID §6.1); zero or two is an error, as in
///   go-spiffe (X509-SVID §6.2 would let a consumer skip or truncate such an entry; meshid
///   refuses the document instead). Its other key members are not used: the certificate
///   is the authority, and [`to_json`](Self::to_json) writes them from its public key.
/// - A `jwt-svid` entry needs a non-empty `kid` (JWT-SVID §6.1), unique in the
///   document, and must be a well-formed public JWK: `EC` with `crv` `P-256`, `P-384` or
///   `P-521` and unpadded base64url `x` and `y` of the curve's length; `RSA` with
///   non-empty base64url `n` and `e`; `OKP` with `crv` `Ed25519` and a 32-byte `x`.
/// - No entry of a known use may carry private-key members (`d`, `p`, `q`, ...).
/// - `spiffe_sequence` and `spiffe_refresh_hint` are optional non-negative integers
///   (§4.1.1, §4.1.2); `null` counts as absent.
///
/// A repeated X.509 authority is kept once. Equality compares the trust domain, the X.509
/// and JWT authorities in order, the sequence number and the refresh hint.
///
/// [SPIFFE Trust Domain and Bundle §4]: https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE_Trust_Domain_and_Bundle.md#4-spiffe-bundle-format
#[derive(Clone, PartialEq, Eq)]
pub struct SpiffeBundle {
    trust_domain: TrustDomain,
    /// The X.509 authorities, as the bundle verification uses (with its anchor cache).
    x509: X509Bundle,
    jwt_authorities: Vec<JwtAuthority>,
    sequence: Option<u64>,
    refresh_hint: Option<Duration>,
}

/// One JWT-SVID signing key of a [`SpiffeBundle`]: a `jwt-svid` JWK, kept as it was read
/// so that writing the bundle back gives the same key, extension members included.
///
/// Its public key is decoded once, when the bundle is read; clones share it.
///
/// ```
/// use meshid::{JwtAuthority, KeyPair, KeyType, Signer, SpiffeBundle, TrustDomain};
///
/// let key = KeyPair::generate(KeyType::P256)?;
/// let authority = JwtAuthority::new("key-1", &key.public_key_der())?;
/// assert_eq!(authority.key_type(), "EC");
/// assert_eq!(authority.curve(), Some("P-256"));
/// assert_eq!(authority.public_key_der(), key.public_key_der());
///
/// let bundle = SpiffeBundle::new(TrustDomain::new("example.org")?).with_jwt_authority(authority);
/// assert!(bundle.to_json().contains(r#""use":"jwt-svid""#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    inner: Arc<AuthorityInner>,
}

#[derive(PartialEq, Eq)]
struct AuthorityInner {
    key_id: String,
    key_type: String,
    jwk: Map<String, Value>,
    public_key: jwk::PublicKey,
}

impl JwtAuthority {
    /// A JWT authority for the public key `spki_der` (a DER `SubjectPublicKeyInfo`: EC
    /// P-256, P-384 or P-521, RSA, or Ed25519) under the key ID `key_id`, written as a JWK
    /// with `use` `jwt-svid` and `kid` (JWT-SVID §6.1).
    pub fn new(key_id: impl Into<String>, spki_der: &[u8]) -> Result<Self, BundleError> {
        let key_id = key_id.into();
        if key_id.is_empty() {
            return Err(BundleError::EmptyKeyId);
        }
        let mut jwk =
            jwk::members_of_spki_der(spki_der).ok_or(BundleError::UnsupportedPublicKey)?;
        let key_type = jwk
            .get("kty")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let public_key =
            jwk::public_key(&key_type, &jwk).ok_or(BundleError::UnsupportedPublicKey)?;
        jwk.insert("use".into(), JWT_SVID.into());
        jwk.insert("kid".into(), key_id.clone().into());
        Ok(Self {
            inner: Arc::new(AuthorityInner {
                key_id,
                key_type,
                jwk,
                public_key,
            }),
        })
    }

    /// The key ID (`kid`), never empty.
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// The key type (`kty`): `EC`, `RSA` or `OKP`.
    pub fn key_type(&self) -> &str {
        &self.inner.key_type
    }

    /// The curve (`crv`) of an `EC` or `OKP` key.
    pub fn curve(&self) -> Option<&str> {
        self.inner.jwk.get("crv").and_then(Value::as_str)
    }

    /// The public key as a DER `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7), built from the
    /// JWK's members.
    pub fn public_key_der(&self) -> &[u8] {
        &self.inner.public_key.spki_der
    }

    /// The decoded public key.
    pub(crate) fn public_key(&self) -> &jwk::PublicKey {
        &self.inner.public_key
    }

    /// The JWK as compact JSON (members in name order).
    pub fn to_json(&self) -> String {
        Value::Object(self.inner.jwk.clone()).to_string()
    }
}

impl fmt::Debug for JwtAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthority")
            .field("key_id", &self.inner.key_id)
            .field("key_type", &self.inner.key_type)
            .field("curve", &self.curve())
            .finish_non_exhaustive()
    }
}

/// What one `keys` entry contributes.
enum Entry {
    X509(CertificateDer<'static>),
    Jwt(JwtAuthority),
    Ignored,
}

impl SpiffeBundle {
    /// The largest document [`parse`](Self::parse) reads: 16 MiB.
    pub const MAX_INPUT_LEN: usize = MAX_INPUT_LEN;

    /// An empty bundle for `trust_domain`, with no sequence number or refresh hint.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            x509: X509Bundle::new(trust_domain.clone()),
            trust_domain,
            jwt_authorities: Vec::new(),
            sequence: None,
            refresh_hint: None,
        }
    }

    /// Reads a SPIFFE bundle document (see the [reading rules](Self#reading-rules)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use meshid::{BundleError, SpiffeBundle, TrustDomain};
    ///
    /// let td = TrustDomain::new("domain.test")?;
    /// let doc = include_bytes!("../../tests/data/go-spiffe/spiffebundle/spiffebundle_valid_2.json");
    /// let bundle = SpiffeBundle::parse(td.clone(), doc)?;
    /// assert_eq!(bundle.x509_authorities().len(), 1);
    /// assert_eq!(bundle.jwt_authorities().len(), 6);
    /// assert_eq!(bundle.sequence(), Some(1));
    /// assert_eq!(bundle.refresh_hint(), Some(Duration::from_secs(60)));
    /// // Writing it out and reading it back gives the same bundle.
    /// assert_eq!(SpiffeBundle::parse(td.clone(), bundle.to_json().as_bytes())?, bundle);
    ///
    /// // An x509-svid entry must hold exactly one certificate.
    /// let two = include_bytes!("../../tests/data/go-spiffe/spiffebundle/spiffebundle_multiple_x509.json");
    /// assert_eq!(
    ///     SpiffeBundle::parse(td, two),
    ///     Err(BundleError::X5cCount { index: 0, count: 2 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        Self::parse_as(trust_domain, json, Document::SpiffeBundle)
    }

    /// Reads a trust domain's JWT bundle as the Workload API carries it
    /// (`JWTBundlesResponse.bundles`, whose values the Workload API's JWT profile makes JWKS
    /// documents): a JWK Set (RFC 7517 §5) whose keys are the JWT authorities, where `use`
    /// is optional. SPIRE and
    /// go-spiffe send their keys without it, so a key with no `use` is read as a JWT
    /// authority here, which [`parse`](Self::parse) (SPIFFE Trust Domain and Bundle §4.2.1,
    /// `use` required) would ignore; so is one whose `use` is RFC 7517's `sig`. A JWK Set
    /// holds JWT authorities only: keys with any other `use` (`x509-svid` included) are
    /// ignored, and the result has no X.509 authorities. Everything else is checked as by
    /// `parse`: a JWT authority still needs a unique `kid` and a well-formed public key,
    /// and private key members are refused.
    ///
    /// ```
    /// # use meshid::{SpiffeBundle, TrustDomain};
    /// let td = TrustDomain::new("example.org")?;
    /// // As SPIRE's agent sends it: no `use`.
    /// let jwks = br#"{"keys":[{"kty":"EC","kid":"k1","crv":"P-256",
    ///     "x":"ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k",
    ///     "y":"tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM"}]}"#;
    /// assert_eq!(SpiffeBundle::parse_jwks(td.clone(), jwks)?.jwt_authorities().len(), 1);
    /// assert!(SpiffeBundle::parse(td, jwks)?.jwt_authorities().is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse_jwks(trust_domain: TrustDomain, json: &[u8]) -> Result<Self, BundleError> {
        Self::parse_as(trust_domain, json, Document::Jwks)
    }

    fn parse_as(
        trust_domain: TrustDomain,
        json: &[u8],
        document: Document,
    ) -> Result<Self, BundleError> {
        if json.len() > MAX_INPUT_LEN {
            return Err(BundleError::TooLarge { len: json.len() });
        }
        if jwk::nests_deeper_than(json, MAX_DEPTH) {
            return Err(BundleError::TooDeep { limit: MAX_DEPTH });
        }
        let doc: Value = serde_json::from_slice(json).map_err(|e| {
            let (line, column) = (e.line(), e.column());
            if e.is_eof() {
                BundleError::JsonTruncated { line, column }
            } else {
                BundleError::JsonSyntax { line, column }
            }
        })?;
        let Value::Object(mut doc) = doc else {
            return Err(BundleError::NotAnObject);
        };
        let mut bundle = Self::new(trust_domain);
        bundle.sequence = optional_u64(&doc, "spiffe_sequence", BundleError::BadSequence)?;
        bundle.refresh_hint =
            optional_u64(&doc, "spiffe_refresh_hint", BundleError::BadRefreshHint)?
                .map(Duration::from_secs);
        let keys = match doc.remove("keys") {
            None | Some(Value::Null) => return Err(BundleError::MissingKeys),
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(BundleError::KeysNotArray),
        };
        let mut key_ids: HashMap<String, usize> = HashMap::new();
        let mut x509_authorities = Vec::new();
        for (index, entry) in keys.into_iter().enumerate() {
            let Value::Object(entry) = entry else {
                return Err(BundleError::KeyNotObject { index });
            };
            match read_entry(index, entry, document)? {
                Entry::X509(cert) => x509_authorities.push(cert),
                Entry::Jwt(authority) => {
                    if let Some(&first) = key_ids.get(&authority.inner.key_id) {
                        return Err(BundleError::DuplicateKeyId {
                            first,
                            index,
                            key_id: authority.inner.key_id.clone(),
                        });
                    }
                    key_ids.insert(authority.inner.key_id.clone(), index);
                    bundle.jwt_authorities.push(authority);
                }
                Entry::Ignored => {}
            }
        }
        dedup(&mut x509_authorities);
        bundle.x509 = X509Bundle::from_checked(bundle.trust_domain.clone(), x509_authorities);
        Ok(bundle)
    }

    /// The document as compact JSON: `keys` (the X.509 authorities first, then the JWT
    /// authorities), then `spiffe_refresh_hint` and `spiffe_sequence` when set.
    ///
    /// An X.509 authority is written with `use`, `x5c` and the JWK form of its public
    /// key (`kty` with `crv`/`x`/`y` or `n`/`e`), as go-spiffe writes it; a key type JWK
    /// cannot express is written with `use` and `x5c` only. `parse(to_json(b)) == b`.
    pub fn to_json(&self) -> String {
        let mut keys =
            Vec::with_capacity(self.x509.authorities().len() + self.jwt_authorities.len());
        for cert in self.x509.authorities() {
            let mut entry = jwk::members_of_certificate(cert.as_ref()).unwrap_or_default();
            entry.insert("use".into(), X509_SVID.into());
            entry.insert(
                "x5c".into(),
                Value::Array(vec![Base64::encode_string(cert.as_ref()).into()]),
            );
            keys.push(Value::Object(entry));
        }
        keys.extend(
            self.jwt_authorities
                .iter()
                .map(|a| Value::Object(a.inner.jwk.clone())),
        );
        let mut doc = Map::new();
        doc.insert("keys".into(), Value::Array(keys));
        if let Some(hint) = self.refresh_hint {
            doc.insert("spiffe_refresh_hint".into(), hint.as_secs().into());
        }
        if let Some(sequence) = self.sequence {
            doc.insert("spiffe_sequence".into(), sequence.into());
        }
        Value::Object(doc).to_string()
    }

    /// The trust domain this bundle is for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The X.509 authorities (CA certificates), DER-encoded, in document order.
    pub fn x509_authorities(&self) -> &[CertificateDer<'static>] {
        self.x509.authorities()
    }

    /// The JWT authorities, in document order.
    pub fn jwt_authorities(&self) -> &[JwtAuthority] {
        &self.jwt_authorities
    }

    /// The JWT authority with key ID `key_id`.
    pub fn jwt_authority(&self, key_id: &str) -> Option<&JwtAuthority> {
        self.jwt_authorities
            .iter()
            .find(|a| a.inner.key_id == key_id)
    }

    /// The sequence number (`spiffe_sequence`, §4.1.1).
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// The refresh hint (`spiffe_refresh_hint`, §4.1.2), in whole seconds.
    pub fn refresh_hint(&self) -> Option<Duration> {
        self.refresh_hint
    }

    /// Whether the bundle has neither X.509 nor JWT authorities.
    pub fn is_empty(&self) -> bool {
        self.x509.is_empty() && self.jwt_authorities.is_empty()
    }

    /// Sets the sequence number.
    #[must_use]
    pub fn with_sequence(mut self, sequence: u64) -> Self {
        self.sequence = Some(sequence);
        self
    }

    /// Sets the refresh hint, rounded up to whole seconds (the document counts seconds).
    #[must_use]
    pub fn with_refresh_hint(mut self, hint: Duration) -> Self {
        let secs = hint
            .as_secs()
            .saturating_add(u64::from(hint.subsec_nanos() > 0));
        self.refresh_hint = Some(Duration::from_secs(secs));
        self
    }

    /// Adds a JWT authority, replacing the one with the same key ID if there is one.
    #[must_use]
    pub fn with_jwt_authority(mut self, authority: JwtAuthority) -> Self {
        match self
            .jwt_authorities
            .iter_mut()
            .find(|a| a.inner.key_id == authority.inner.key_id)
        {
            Some(slot) => *slot = authority,
            None => self.jwt_authorities.push(authority),
        }
        self
    }

    /// The X.509 part of this bundle.
    pub fn to_x509_bundle(&self) -> X509Bundle {
        self.x509.clone()
    }

    /// A bundle with the trust domain and X.509 authorities of `bundle`, and no JWT
    /// authorities, sequence number or refresh hint.
    pub fn from_x509_bundle(bundle: &X509Bundle) -> Self {
        Self {
            x509: bundle.clone(),
            ..Self::new(bundle.trust_domain().clone())
        }
    }
}

impl BundleSource for SpiffeBundle {
    fn x509_bundle(&self, trust_domain: &TrustDomain) -> Option<X509Bundle> {
        (&self.trust_domain == trust_domain).then(|| self.x509.clone())
    }
}

impl fmt::Debug for SpiffeBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeBundle")
            .field("trust_domain", &self.trust_domain)
            .field("x509_authorities", &self.x509.authorities().len())
            .field("jwt_authorities", &self.jwt_authorities)
            .field("sequence", &self.sequence)
            .field("refresh_hint", &self.refresh_hint)
            .finish()
    }
}

/// A non-negative 64-bit integer member; `None` when absent or `null`, `refused` for
/// anything else.
fn optional_u64(
    doc: &Map<String, Value>,
    name: &str,
    refused: BundleError,
) -> Result<Option<u64>, BundleError> {
    match doc.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(refused),
    }
}

/// A string member, `None` when absent or `null`.
fn optional_str<'a>(
    entry: &'a Map<String, Value>,
    index: usize,
    member: &'static str,
) -> Result<Option<&'a str>, BundleError> {
    match entry.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(BundleError::WrongType { index, member }),
    }
}

/// What a document is read as: a SPIFFE bundle, whose keys must say their `use`, or the
/// Workload API's JWK Set of JWT authorities, whose keys may leave it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Document {
    SpiffeBundle,
    Jwks,
}

/// Applies the reading rules to `keys[index]`.
fn read_entry(
    index: usize,
    mut entry: Map<String, Value>,
    document: Document,
) -> Result<Entry, BundleError> {
    let is_x509 = match (document, optional_str(&entry, index, "use")?) {
        (Document::SpiffeBundle, Some(X509_SVID)) => true,
        // A JWK Set holds JWT authorities only: a key with no `use`, or RFC 7517's `sig`,
        // is one there; X.509 authorities are not taken from it.
        (_, Some(JWT_SVID)) | (Document::Jwks, None | Some("sig")) => false,
        _ => return Ok(Entry::Ignored),
    };
    let kty = optional_str(&entry, index, "kty")?;
    if kty.is_some_and(|k| !jwk::KNOWN_KEY_TYPES.contains(&k)) {
        return Ok(Entry::Ignored);
    }
    if let Some(param) = jwk::private_member(&entry) {
        return Err(BundleError::PrivateKeyMaterial { index, param });
    }
    if is_x509 {
        return read_x5c(index, &entry).map(Entry::X509);
    }
    let key_type = kty.ok_or(BundleError::MissingKeyType { index })?.to_owned();
    let key_id = match optional_str(&entry, index, "kid")? {
        Some(kid) if !kid.is_empty() => kid.to_owned(),
        _ => return Err(BundleError::MissingKeyId { index }),
    };
    jwk::check_public(index, &key_type, &entry)?;
    if !entry.values().all(jwk::numbers_are_exact) {
        return Err(BundleError::InexactNumber { index });
    }
    let public_key = jwk::public_key(&key_type, &entry).ok_or(BundleError::BadJwk {
        index,
        param: "kty",
    })?;
    // A JWK Set's key read as a JWT authority is one: it says so when written out as part
    // of a SPIFFE bundle (whatever it said before: nothing, `null` or `sig`).
    entry.insert("use".to_owned(), Value::String(JWT_SVID.to_owned()));
    Ok(Entry::Jwt(JwtAuthority {
        inner: Arc::new(AuthorityInner {
            key_id,
            key_type,
            jwk: entry,
            public_key,
        }),
    }))
}

/// The one certificate of an `x509-svid` entry.
fn read_x5c(
    index: usize,
    entry: &Map<String, Value>,
) -> Result<CertificateDer<'static>, BundleError> {
    let chain: &[Value] = match entry.get("x5c") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(chain)) => chain,
        Some(_) => {
            return Err(BundleError::WrongType {
                index,
                member: "x5c",
            })
        }
    };
    let [value] = chain else {
        return Err(BundleError::X5cCount {
            index,
            count: chain.len(),
        });
    };
    let text = value.as_str().ok_or(BundleError::WrongType {
        index,
        member: "x5c",
    })?;
    let der = Base64::decode_vec(text).map_err(|_| BundleError::BadX5cBase64 { index })?;
    Certificate::from_der(&der)
        .map_err(|source| BundleError::BadX5cCertificate { index, source })?;
    Ok(CertificateDer::from(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID_1: &[u8] =
        include_bytes!("../../tests/data/go-spiffe/spiffebundle/spiffebundle_valid_1.json");
    const VALID_2: &[u8] =
        include_bytes!("../../tests/data/go-spiffe/spiffebundle/spiffebundle_valid_2.json");

    /// A JWT key as SPIRE's agent sends it in `JWTBundlesResponse`: no `use`.
    const NO_USE: &str = r#"{"kty":"EC","kid":"k1","crv":"P-256","x":"ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k","y":"tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM"}"#;

    #[test]
    fn a_jwks_key_without_use_is_a_jwt_authority_only_in_a_jwk_set() {
        let doc = format!(r#"{{"keys":[{NO_USE}]}}"#);
        let jwks = SpiffeBundle::parse_jwks(td(), doc.as_bytes()).unwrap();
        assert_eq!(jwks.jwt_authorities().len(), 1);
        assert_eq!(jwks.jwt_authorities()[0].key_id(), "k1");
        // Written out, it says what it is, and a SPIFFE bundle reader agrees.
        let json = jwks.to_json();
        assert!(json.contains(r#""use":"jwt-svid""#), "{json}");
        assert_eq!(SpiffeBundle::parse(td(), json.as_bytes()).unwrap(), jwks);
        // As a SPIFFE bundle, `use` is required: the key is ignored.
        assert!(SpiffeBundle::parse(td(), doc.as_bytes())
            .unwrap()
            .jwt_authorities()
            .is_empty());
    }

    #[test]
    fn spire_bundles_are_read() {
        // SPIRE v1.13.3's own output (tests/data/SOURCES.md).
        let jwks = include_bytes!("../../tests/data/spire/jwt-bundle-jwks.json");
        let bundle = SpiffeBundle::parse_jwks(td(), jwks).unwrap();
        assert_eq!(bundle.jwt_authorities().len(), 1);
        assert_eq!(bundle.jwt_authorities()[0].curve(), Some("P-256"));
        let doc = include_bytes!("../../tests/data/spire/spiffe-bundle.json");
        let bundle = SpiffeBundle::parse(td(), doc).unwrap();
        assert_eq!(bundle.x509_authorities().len(), 1);
        assert_eq!(bundle.jwt_authorities().len(), 1);
        assert_eq!(bundle.sequence(), Some(1));
    }

    #[test]
    fn a_jwk_set_is_otherwise_checked_as_a_bundle() {
        let no_kid = NO_USE.replace(r#""kid":"k1","#, "");
        let doc = format!(r#"{{"keys":[{no_kid}]}}"#);
        assert_eq!(
            SpiffeBundle::parse_jwks(td(), doc.as_bytes()),
            Err(BundleError::MissingKeyId { index: 0 })
        );
        let twice = format!(r#"{{"keys":[{NO_USE},{NO_USE}]}}"#);
        assert!(matches!(
            SpiffeBundle::parse_jwks(td(), twice.as_bytes()),
            Err(BundleError::DuplicateKeyId {
                first: 0,
                index: 1,
                ..
            })
        ));
        // `null` and `sig` are read as no `use`, and written out as `jwt-svid`.
        for use_ in ["null", r#""sig""#] {
            let with = NO_USE.replace(r#""kid""#, &format!(r#""use":{use_},"kid""#));
            let doc = format!(r#"{{"keys":[{with}]}}"#);
            let jwks = SpiffeBundle::parse_jwks(td(), doc.as_bytes()).unwrap();
            assert_eq!(jwks.jwt_authorities().len(), 1, "{use_}");
            let again = SpiffeBundle::parse(td(), jwks.to_json().as_bytes()).unwrap();
            assert_eq!(again, jwks, "{use_}");
        }
        // X.509 authorities are not taken from a JWK Set (SPIRE's bundle has one of each).
        let doc = include_bytes!("../../tests/data/spire/spiffe-bundle.json");
        let jwks = SpiffeBundle::parse_jwks(td(), doc).unwrap();
        assert!(jwks.x509_authorities().is_empty());
        assert_eq!(jwks.jwt_authorities().len(), 1);
        let other_use = NO_USE.replace(r#""kid""#, r#""use":"enc","kid""#);
        let doc = format!(r#"{{"keys":[{other_use}]}}"#);
        assert!(SpiffeBundle::parse_jwks(td(), doc.as_bytes())
            .unwrap()
            .is_empty());
    }

    fn td() -> TrustDomain {
        TrustDomain::new("domain.test").unwrap()
    }

    fn parse(json: &str) -> Result<SpiffeBundle, BundleError> {
        SpiffeBundle::parse(td(), json.as_bytes())
    }

    const EC_P256: &str = r#""kty":"EC","crv":"P-256","x":"ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k","y":"tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM""#;

    #[test]
    fn round_trip_keeps_everything() {
        let b = SpiffeBundle::parse(td(), VALID_2).unwrap();
        let again = SpiffeBundle::parse(td(), b.to_json().as_bytes()).unwrap();
        assert_eq!(again, b);
        assert_eq!(
            again.jwt_authorities()[0].key_id(),
            "IRsID4VIM3T11TsK43Ny1DgCD5UNWhva"
        );
        assert_eq!(again.jwt_authorities()[0].key_type(), "EC");
        assert_eq!(again.jwt_authorities()[0].curve(), Some("P-256"));
        assert!(again
            .jwt_authority("cHPeHMMEtvTeSMBc20DzPPhkF41BN2WJ")
            .is_some());
        // The X.509 entry is written with the certificate's own key, as in the source file.
        let out: Value = serde_json::from_str(&b.to_json()).unwrap();
        let src: Value = serde_json::from_slice(VALID_2).unwrap();
        assert_eq!(out["keys"][0], src["keys"][0]);
    }

    #[test]
    fn empty_keys_and_nulls() {
        let b = parse(r#"{"keys":[],"spiffe_sequence":null}"#).unwrap();
        assert!(b.is_empty());
        assert_eq!(b.sequence(), None);
        assert_eq!(parse(r#"{"keys":null}"#), Err(BundleError::MissingKeys));
        assert_eq!(parse(r#"{"keys":{}}"#), Err(BundleError::KeysNotArray));
        assert_eq!(parse("[]"), Err(BundleError::NotAnObject));
        assert_eq!(parse("[1]"), Err(BundleError::NotAnObject));
    }

    #[test]
    fn jwt_rules() {
        let key = |extra: &str| format!(r#"{{"keys":[{{"use":"jwt-svid",{EC_P256}{extra}}}]}}"#);
        assert_eq!(parse(&key("")), Err(BundleError::MissingKeyId { index: 0 }));
        assert_eq!(
            parse(&key(r#","kid":"""#)),
            Err(BundleError::MissingKeyId { index: 0 })
        );
        assert_eq!(
            parse(&key(r#","kid":7"#)),
            Err(BundleError::WrongType {
                index: 0,
                member: "kid"
            })
        );
        assert_eq!(
            parse(&key(r#","kid":"a","d":"AAAA""#)),
            Err(BundleError::PrivateKeyMaterial {
                index: 0,
                param: "d"
            })
        );
        assert_eq!(
            parse(&key(r#","kid":"a","ext":1.5"#)),
            Err(BundleError::InexactNumber { index: 0 })
        );
        let ok = parse(&key(r#","kid":"a","ext":[1,{"n":-2}]"#)).unwrap();
        assert_eq!(ok.jwt_authorities()[0].key_id(), "a");
        let dup = format!(
            r#"{{"keys":[{{"use":"jwt-svid","kid":"a",{EC_P256}}},{{"use":"jwt-svid","kid":"a",{EC_P256}}}]}}"#
        );
        assert!(matches!(
            parse(&dup),
            Err(BundleError::DuplicateKeyId {
                first: 0,
                index: 1,
                ..
            })
        ));
    }

    #[test]
    fn builders() {
        let b = SpiffeBundle::parse(td(), VALID_1).unwrap();
        let jwt = b.jwt_authorities()[0].clone();
        let built = SpiffeBundle::from_x509_bundle(&b.to_x509_bundle())
            .with_jwt_authority(jwt.clone())
            .with_jwt_authority(jwt)
            .with_sequence(3)
            .with_refresh_hint(Duration::from_millis(1500));
        assert_eq!(built.jwt_authorities().len(), 1);
        assert_eq!(built.refresh_hint(), Some(Duration::from_secs(2)));
        assert_eq!(built.x509_authorities(), b.x509_authorities());
        let again = SpiffeBundle::parse(td(), built.to_json().as_bytes()).unwrap();
        assert_eq!(again, built);
        assert_eq!(built.x509_bundle(&td()), Some(b.to_x509_bundle()));
        assert_eq!(
            built.x509_bundle(&TrustDomain::new("x.test").unwrap()),
            None
        );
    }
}
