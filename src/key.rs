//! Private keys as SVIDs carry them: PKCS#8 DER, wiped on drop, never printed.

use std::fmt;

use der::asn1::UintRef;
use der::{Decode, Encode, Sequence};
use p256::pkcs8::{DecodePrivateKey, ObjectIdentifier, PrivateKeyInfoRef};
use spki::{DecodePublicKey, SubjectPublicKeyInfoOwned};
use thiserror::Error;
use zeroize::Zeroizing;

/// `id-ecPublicKey`.
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp256r1`.
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `secp384r1`.
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `rsaEncryption`.
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// The algorithm and size of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on NIST P-256 (the SPIFFE default).
    P256,
    /// ECDSA on NIST P-384.
    P384,
    /// RSA, with the modulus size in bits. Loaded and verified, never generated here.
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
}

impl KeyType {
    /// The type of a public key, when meshid knows it.
    pub(crate) fn of_spki(spki: &SubjectPublicKeyInfoOwned) -> Option<Self> {
        match spki.algorithm.oid {
            EC_PUBLIC_KEY => match spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())?
            {
                P256 => Some(Self::P256),
                P384 => Some(Self::P384),
                _ => None,
            },
            RSA => {
                let key = RsaPublicKey::from_der(spki.subject_public_key.as_bytes()?).ok()?;
                Some(Self::Rsa {
                    bits: bit_len(key.modulus.as_bytes()),
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::P256 => f.write_str("ECDSA P-256"),
            Self::P384 => f.write_str("ECDSA P-384"),
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

/// Why a private or public key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM input could not be read.
    #[error(transparent)]
    Pem(#[from] crate::PemError),
    /// The bytes are not a PKCS#8 `PrivateKeyInfo` (RFC 5208), or its inner key is malformed.
    #[error("private key is not valid PKCS#8 (RFC 5208)")]
    MalformedPrivateKey,
    /// A PEM input holds no `PRIVATE KEY` block.
    #[error("no private key found (expected a PKCS#8 `PRIVATE KEY` PEM block)")]
    NoPrivateKey,
    /// A key of an algorithm or curve meshid does not handle.
    #[error("unsupported key type {oid} (supported: ECDSA P-256, P-384, RSA)")]
    UnsupportedKeyType {
        /// The algorithm OID, or the curve OID for EC keys.
        oid: ObjectIdentifier,
    },
    /// A certificate's public key cannot be decoded for its stated algorithm.
    #[error("certificate public key is malformed")]
    MalformedPublicKey,
    /// The private key is not the one whose public half is in the certificate.
    #[error("leaf certificate does not match private key")]
    Mismatch,
}

/// A private key in PKCS#8 DER. The bytes are zeroized on drop and never shown by `Debug`.
#[derive(Clone)]
pub struct PrivateKey {
    der: Zeroizing<Vec<u8>>,
    key_type: KeyType,
}

impl PrivateKey {
    /// Reads a PKCS#8 DER private key (P-256, P-384 or RSA), as `openssl genpkey` writes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key_type = key_type_of(der)?;
        Ok(Self {
            der: Zeroizing::new(der.to_vec()),
            key_type,
        })
    }

    /// Reads the first `PRIVATE KEY` block of a PEM document.
    pub fn from_pkcs8_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let blocks = crate::pem::parse(pem)?;
        let block = blocks
            .iter()
            .find(|b| b.label == "PRIVATE KEY")
            .ok_or(KeyError::NoPrivateKey)?;
        Self::from_pkcs8_der(&block.der)
    }

    /// The PKCS#8 DER bytes. Handle with care: this is the secret.
    pub fn secret_pkcs8_der(&self) -> &[u8] {
        &self.der
    }

    /// PKCS#8 PEM (`PRIVATE KEY`), in a string wiped on drop.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(crate::pem::encode("PRIVATE KEY", &self.der))
    }

    /// The key's algorithm and size.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Checks that `spki` (a certificate's `SubjectPublicKeyInfo`) is this key's public half.
    pub(crate) fn check_matches(&self, spki: &SubjectPublicKeyInfoOwned) -> Result<(), KeyError> {
        let spki_der = spki.to_der().map_err(|_| KeyError::MalformedPublicKey)?;
        let matches = match self.key_type {
            KeyType::P256 => {
                let secret = p256::SecretKey::from_pkcs8_der(&self.der)
                    .map_err(|_| KeyError::MalformedPrivateKey)?;
                p256::PublicKey::from_public_key_der(&spki_der)
                    .is_ok_and(|public| public == secret.public_key())
            }
            KeyType::P384 => {
                let secret = p384::SecretKey::from_pkcs8_der(&self.der)
                    .map_err(|_| KeyError::MalformedPrivateKey)?;
                p384::PublicKey::from_public_key_der(&spki_der)
                    .is_ok_and(|public| public == secret.public_key())
            }
            KeyType::Rsa { .. } => {
                let info = PrivateKeyInfoRef::from_der(&self.der)
                    .map_err(|_| KeyError::MalformedPrivateKey)?;
                let private = RsaPrivateKey::from_der(info.private_key.as_bytes())
                    .map_err(|_| KeyError::MalformedPrivateKey)?;
                spki.algorithm.oid == RSA
                    && spki
                        .subject_public_key
                        .as_bytes()
                        .and_then(|bits| RsaPublicKey::from_der(bits).ok())
                        .is_some_and(|public| {
                            public.modulus == private.modulus
                                && public.public_exponent == private.public_exponent
                        })
            }
        };
        if matches {
            Ok(())
        } else {
            Err(KeyError::Mismatch)
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .field("der", &"[redacted]")
            .finish()
    }
}

/// Reads the algorithm (and curve or size) of a PKCS#8 key, validating its inner key.
fn key_type_of(der: &[u8]) -> Result<KeyType, KeyError> {
    let info = PrivateKeyInfoRef::from_der(der).map_err(|_| KeyError::MalformedPrivateKey)?;
    match info.algorithm.oid {
        EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| KeyError::MalformedPrivateKey)?;
            match curve {
                P256 => p256::SecretKey::from_pkcs8_der(der)
                    .map(|_| KeyType::P256)
                    .map_err(|_| KeyError::MalformedPrivateKey),
                P384 => p384::SecretKey::from_pkcs8_der(der)
                    .map(|_| KeyType::P384)
                    .map_err(|_| KeyError::MalformedPrivateKey),
                oid => Err(KeyError::UnsupportedKeyType { oid }),
            }
        }
        RSA => {
            let key = RsaPrivateKey::from_der(info.private_key.as_bytes())
                .map_err(|_| KeyError::MalformedPrivateKey)?;
            Ok(KeyType::Rsa {
                bits: bit_len(key.modulus.as_bytes()),
            })
        }
        oid => Err(KeyError::UnsupportedKeyType { oid }),
    }
}

/// The curve of a PKCS#8 EC key, read from its header only (for backends that validate the
/// key themselves, such as ring).
#[cfg(all(feature = "ca", any(feature = "ring", feature = "aws-lc-rs")))]
pub(crate) fn ec_curve_of_pkcs8(der: &[u8]) -> Result<KeyType, KeyError> {
    let info = PrivateKeyInfoRef::from_der(der).map_err(|_| KeyError::MalformedPrivateKey)?;
    if info.algorithm.oid != EC_PUBLIC_KEY {
        return Err(KeyError::UnsupportedKeyType {
            oid: info.algorithm.oid,
        });
    }
    match info
        .algorithm
        .parameters_oid()
        .map_err(|_| KeyError::MalformedPrivateKey)?
    {
        P256 => Ok(KeyType::P256),
        P384 => Ok(KeyType::P384),
        oid => Err(KeyError::UnsupportedKeyType { oid }),
    }
}

/// The DER `SubjectPublicKeyInfo` of an EC public key given as a SEC1 point.
#[cfg(all(feature = "ca", any(feature = "ring", feature = "aws-lc-rs")))]
pub(crate) fn ec_spki_der(key_type: KeyType, point: &[u8]) -> Result<Vec<u8>, KeyError> {
    let curve = match key_type {
        KeyType::P256 => P256,
        KeyType::P384 => P384,
        KeyType::Rsa { .. } => return Err(KeyError::MalformedPublicKey),
    };
    let spki = SubjectPublicKeyInfoOwned {
        algorithm: spki::AlgorithmIdentifierOwned {
            oid: EC_PUBLIC_KEY,
            parameters: Some(der::Any::from(&curve)),
        },
        subject_public_key: der::asn1::BitString::from_bytes(point)
            .map_err(|_| KeyError::MalformedPublicKey)?,
    };
    spki.to_der().map_err(|_| KeyError::MalformedPublicKey)
}

/// The size of an unsigned big-endian integer, in bits.
pub(crate) fn bit_len(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|&b| b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    let lead = 8 - usize::try_from(bytes[0].leading_zeros()).unwrap_or(0);
    (bytes.len() - 1) * 8 + lead
}

/// `RSAPublicKey` (RFC 8017 A.1.1).
#[derive(Sequence)]
pub(crate) struct RsaPublicKey<'a> {
    pub(crate) modulus: UintRef<'a>,
    pub(crate) public_exponent: UintRef<'a>,
}

/// `RSAPrivateKey` (RFC 8017 A.1.2, two-prime form). Only the public fields are read; the
/// others are decoded to check the structure is complete.
#[allow(dead_code)]
#[derive(Sequence)]
struct RsaPrivateKey<'a> {
    version: UintRef<'a>,
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
    private_exponent: UintRef<'a>,
    prime1: UintRef<'a>,
    prime2: UintRef<'a>,
    exponent1: UintRef<'a>,
    exponent2: UintRef<'a>,
    coefficient: UintRef<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0x80, 0]), 16);
        assert_eq!(bit_len(&[0, 0x7f, 0]), 15);
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert_eq!(
            PrivateKey::from_pkcs8_der(b"not a key").unwrap_err(),
            KeyError::MalformedPrivateKey
        );
        assert_eq!(
            PrivateKey::from_pkcs8_der(&[]).unwrap_err(),
            KeyError::MalformedPrivateKey
        );
    }
}
