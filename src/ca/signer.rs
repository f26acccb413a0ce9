//! Signing keys: the [`Signer`] trait an [`Authority`](super::Authority) signs through, and
//! [`KeyPair`], its pure-Rust (RustCrypto) implementation.

use std::fmt;

use der::asn1::BitString;
use der::oid::ObjectIdentifier;
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::Generate;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use spki::{AlgorithmIdentifierOwned, EncodePublicKey, SubjectPublicKeyInfoOwned};
use zeroize::Zeroizing;

use super::CaError;
use crate::{KeyType, PrivateKey};

/// `ecdsa-with-SHA256`.
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// `ecdsa-with-SHA384`.
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// A key that signs certificates and CSRs. Implement it to keep an authority's key in a
/// KMS or HSM; meshid only needs the public key and signatures.
pub trait Signer: Send + Sync {
    /// The key's type, which fixes the signature algorithm (ECDSA with SHA-256 for P-256,
    /// SHA-384 for P-384).
    fn key_type(&self) -> KeyType;

    /// The public key as a DER `SubjectPublicKeyInfo`.
    fn public_key_der(&self) -> Vec<u8>;

    /// Signs `message`, returning the DER-encoded ECDSA signature (`Ecdsa-Sig-Value`).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError>;
}

/// The X.509 `AlgorithmIdentifier` of the signatures a key of `key_type` makes.
pub(crate) fn signature_algorithm(key_type: KeyType) -> Result<AlgorithmIdentifierOwned, CaError> {
    let oid = match key_type {
        KeyType::P256 => ECDSA_SHA256,
        KeyType::P384 => ECDSA_SHA384,
        other => return Err(CaError::UnsupportedKeyType(other)),
    };
    Ok(AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    })
}

/// Signs with `signer` and wraps the signature as the BIT STRING certificates carry.
pub(crate) fn sign_bits(signer: &dyn Signer, message: &[u8]) -> Result<BitString, CaError> {
    let sig = signer.sign(message)?;
    BitString::from_bytes(&sig).map_err(|_| CaError::Encoding)
}

/// The signer's public key as a parsed `SubjectPublicKeyInfo`.
pub(crate) fn public_key_info(signer: &dyn Signer) -> Result<SubjectPublicKeyInfoOwned, CaError> {
    use der::Decode;
    SubjectPublicKeyInfoOwned::from_der(&signer.public_key_der()).map_err(|_| CaError::Encoding)
}

/// An ECDSA key pair (P-256 or P-384) held in memory, signing with RustCrypto. The secret is
/// zeroized on drop and never shown by `Debug`.
///
/// ```
/// use meshid::{KeyPair, KeyType, Signer};
///
/// let key = KeyPair::generate(KeyType::P256)?;
/// let pem = key.to_pkcs8_pem();
/// let again = KeyPair::from_pkcs8_pem(pem.as_bytes())?;
/// assert_eq!(again.public_key_der(), key.public_key_der());
/// # Ok::<(), meshid::CaError>(())
/// ```
#[derive(Clone)]
pub struct KeyPair {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl KeyPair {
    /// Generates a fresh key from the operating system's random source.
    pub fn generate(key_type: KeyType) -> Result<Self, CaError> {
        let inner = match key_type {
            KeyType::P256 => {
                Inner::P256(p256::ecdsa::SigningKey::try_generate().map_err(|_| CaError::Random)?)
            }
            KeyType::P384 => {
                Inner::P384(p384::ecdsa::SigningKey::try_generate().map_err(|_| CaError::Random)?)
            }
            other => return Err(CaError::UnsupportedKeyType(other)),
        };
        Ok(Self { inner })
    }

    /// Reads a PKCS#8 DER key (P-256 or P-384), such as `openssl genpkey` writes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CaError> {
        let inner = match PrivateKey::from_pkcs8_der(der)?.key_type() {
            KeyType::P256 => Inner::P256(
                p256::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map_err(|_| crate::KeyError::MalformedPrivateKey)?,
            ),
            KeyType::P384 => Inner::P384(
                p384::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map_err(|_| crate::KeyError::MalformedPrivateKey)?,
            ),
            other => return Err(CaError::UnsupportedKeyType(other)),
        };
        Ok(Self { inner })
    }

    /// Reads the first `PRIVATE KEY` block of a PEM document.
    pub fn from_pkcs8_pem(pem: &[u8]) -> Result<Self, CaError> {
        let key = PrivateKey::from_pkcs8_pem(pem)?;
        Self::from_pkcs8_der(key.secret_pkcs8_der())
    }

    /// The secret key as PKCS#8 DER, wiped on drop.
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let doc = match &self.inner {
            Inner::P256(k) => k.to_pkcs8_der(),
            Inner::P384(k) => k.to_pkcs8_der(),
        };
        // Encoding an in-memory valid key cannot fail; an empty result would be refused by
        // every reader rather than silently used.
        Zeroizing::new(doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default())
    }

    /// The secret key as PKCS#8 PEM (`PRIVATE KEY`), wiped on drop.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::pem::encode("PRIVATE KEY", &self.to_pkcs8_der()))
    }

    /// The secret key in the form an [`X509Svid`](crate::X509Svid) carries.
    pub fn to_private_key(&self) -> Result<PrivateKey, CaError> {
        Ok(PrivateKey::from_pkcs8_der(&self.to_pkcs8_der())?)
    }
}

impl Signer for KeyPair {
    fn key_type(&self) -> KeyType {
        match self.inner {
            Inner::P256(_) => KeyType::P256,
            Inner::P384(_) => KeyType::P384,
        }
    }

    fn public_key_der(&self) -> Vec<u8> {
        let doc = match &self.inner {
            Inner::P256(k) => k.verifying_key().to_public_key_der(),
            Inner::P384(k) => k.verifying_key().to_public_key_der(),
        };
        doc.map(|d| d.as_bytes().to_vec()).unwrap_or_default()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CaError> {
        let sig = match &self.inner {
            Inner::P256(k) => k
                .try_sign(message)
                .map(|s: p256::ecdsa::DerSignature| s.to_bytes().to_vec()),
            Inner::P384(k) => k
                .try_sign(message)
                .map(|s: p384::ecdsa::DerSignature| s.to_bytes().to_vec()),
        };
        sig.map_err(|_| CaError::Signing)
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("key_type", &self.key_type())
            .field("secret", &"[redacted]")
            .finish()
    }
}
