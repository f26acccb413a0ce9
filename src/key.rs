//! Private keys as SVIDs carry them: PKCS#8 DER, wiped on drop, never printed.

use std::fmt;

use der::asn1::UintRef;
use der::referenced::OwnedToRef;
use der::{Decode, Sequence};
use p256::elliptic_curve::sec1::{FromSec1Point, ModulusSize, Sec1Point, ToSec1Point};
use p256::elliptic_curve::{AffinePoint, CurveArithmetic, FieldBytesSize, PublicKey, SecretKey};
use p256::pkcs8::{AssociatedOid, ObjectIdentifier, PrivateKeyInfoRef};
use spki::SubjectPublicKeyInfoOwned;
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
    /// The public half, derived once when the key is read.
    public: PublicHalf,
}

/// The public half of a [`PrivateKey`], derived when the key is read so that matching a
/// certificate needs no private-key arithmetic. It is public, so it lives outside the
/// zeroized bytes.
#[derive(Clone, PartialEq, Eq)]
enum PublicHalf {
    /// A P-256 point, SEC1 uncompressed (`04 || x || y`).
    P256(Box<[u8]>),
    /// A P-384 point, SEC1 uncompressed.
    P384(Box<[u8]>),
    /// The RSA modulus and public exponent, big-endian without leading zeros (as
    /// [`UintRef::as_bytes`] gives them).
    Rsa {
        modulus: Box<[u8]>,
        exponent: Box<[u8]>,
    },
}

impl PrivateKey {
    /// Reads a PKCS#8 DER private key (P-256, P-384 or RSA), as `openssl genpkey` writes.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let (key_type, public) = read_pkcs8(der)?;
        Ok(Self {
            der: Zeroizing::new(der.to_vec()),
            key_type,
            public,
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

    /// Checks that `spki` (a certificate's `SubjectPublicKeyInfo`) is this key's public half:
    /// the algorithm (and curve) must be the key's, and the public key the one derived from
    /// the private key when it was read.
    pub(crate) fn check_matches(&self, spki: &SubjectPublicKeyInfoOwned) -> Result<(), KeyError> {
        let matches = match &self.public {
            PublicHalf::P256(point) => ec_matches::<p256::NistP256>(spki, point),
            PublicHalf::P384(point) => ec_matches::<p384::NistP384>(spki, point),
            PublicHalf::Rsa { modulus, exponent } => {
                spki.algorithm.oid == RSA
                    && spki
                        .subject_public_key
                        .as_bytes()
                        .and_then(|bits| RsaPublicKey::from_der(bits).ok())
                        .is_some_and(|public| {
                            public.modulus.as_bytes() == &**modulus
                                && public.public_exponent.as_bytes() == &**exponent
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

/// Whether `spki` holds the public key of curve `C` whose uncompressed SEC1 point is
/// `point`: the verdict of decoding it (`PublicKey::<C>::try_from`, which checks the
/// algorithm and curve OIDs and that the point is on the curve) and comparing, without the
/// decode when the certificate carries the point uncompressed, byte for byte (a point has
/// one uncompressed encoding, and `point` is a valid one).
fn ec_matches<C>(spki: &SubjectPublicKeyInfoOwned, point: &[u8]) -> bool
where
    C: AssociatedOid + CurveArithmetic,
    AffinePoint<C>: FromSec1Point<C> + ToSec1Point<C>,
    FieldBytesSize<C>: ModulusSize,
{
    let spki = spki.owned_to_ref();
    if spki.algorithm.assert_oids(EC_PUBLIC_KEY, C::OID).is_err() {
        return false;
    }
    match spki.subject_public_key.as_bytes() {
        Some(bits) if bits == point => true,
        // Any other encoding (a compressed point, or another key): decode and compare.
        _ => PublicKey::<C>::try_from(spki).is_ok_and(|public| {
            let encoded: Sec1Point<C> = public.to_sec1_point(false);
            encoded.as_bytes() == point
        }),
    }
}

// The public half is left out: it is derived from the key, and `Debug` shows what it did.
#[allow(clippy::missing_fields_in_debug)]
impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .field("der", &"[redacted]")
            .finish()
    }
}

/// Reads the algorithm (and curve or size) of a PKCS#8 key, validating its inner key, and
/// derives its public half.
fn read_pkcs8(der: &[u8]) -> Result<(KeyType, PublicHalf), KeyError> {
    let info = PrivateKeyInfoRef::from_der(der).map_err(|_| KeyError::MalformedPrivateKey)?;
    match info.algorithm.oid {
        EC_PUBLIC_KEY => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|_| KeyError::MalformedPrivateKey)?;
            match curve {
                P256 => Ok((
                    KeyType::P256,
                    PublicHalf::P256(ec_public_point::<p256::NistP256>(&info)?),
                )),
                P384 => Ok((
                    KeyType::P384,
                    PublicHalf::P384(ec_public_point::<p384::NistP384>(&info)?),
                )),
                oid => Err(KeyError::UnsupportedKeyType { oid }),
            }
        }
        RSA => {
            let key = RsaPrivateKey::from_der(info.private_key.as_bytes())
                .map_err(|_| KeyError::MalformedPrivateKey)?;
            Ok((
                KeyType::Rsa {
                    bits: bit_len(key.modulus.as_bytes()),
                },
                PublicHalf::Rsa {
                    modulus: key.modulus.as_bytes().into(),
                    exponent: key.public_exponent.as_bytes().into(),
                },
            ))
        }
        oid => Err(KeyError::UnsupportedKeyType { oid }),
    }
}

/// Validates the EC private key of `info` on curve `C` and returns its public key as an
/// uncompressed SEC1 point.
///
/// The checks are those of `SecretKey::<C>::from_pkcs8_der`: the algorithm and curve
/// OIDs, the `ECPrivateKey` structure (RFC 5915) and its curve, the scalar in range, and,
/// when the `ECPrivateKey` carries its public key, that it is the one the scalar gives (a
/// forged key could carry another). The public key is derived once, for that check and
/// for the result, where `from_pkcs8_der` would derive it for the check and again for
/// `public_key()`.
fn ec_public_point<C>(info: &PrivateKeyInfoRef<'_>) -> Result<Box<[u8]>, KeyError>
where
    C: AssociatedOid + CurveArithmetic,
    AffinePoint<C>: FromSec1Point<C> + ToSec1Point<C>,
    FieldBytesSize<C>: ModulusSize,
{
    fn malformed<E>(_: E) -> KeyError {
        KeyError::MalformedPrivateKey
    }
    info.algorithm
        .assert_oids(EC_PUBLIC_KEY, C::OID)
        .map_err(malformed)?;
    let mut ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).map_err(malformed)?;
    // Without its public key the conversion checks the curve and the scalar only.
    let embedded = ec.public_key.take();
    let secret = SecretKey::<C>::try_from(ec).map_err(malformed)?;
    let public = secret.public_key();
    if let Some(bytes) = embedded {
        let claimed = Sec1Point::<C>::from_bytes(bytes).map_err(malformed)?;
        let derived: Sec1Point<C> = public.to_sec1_point(claimed.is_compressed());
        if derived != claimed {
            return Err(KeyError::MalformedPrivateKey);
        }
    }
    let point: Sec1Point<C> = public.to_sec1_point(false);
    Ok(point.as_bytes().into())
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
    use der::Encode as _;
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
    use der::asn1::OctetStringRef;
    use der::Encode;
    use p256::pkcs8::EncodePrivateKey;
    use spki::{AlgorithmIdentifierOwned, EncodePublicKey};

    #[test]
    fn bit_lengths() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0x80, 0]), 16);
        assert_eq!(bit_len(&[0, 0x7f, 0]), 15);
    }

    /// A certificate's `SubjectPublicKeyInfo` for an EC public key.
    fn ec_spki<C>(public: &PublicKey<C>) -> SubjectPublicKeyInfoOwned
    where
        C: AssociatedOid + CurveArithmetic,
        AffinePoint<C>: FromSec1Point<C> + ToSec1Point<C>,
        FieldBytesSize<C>: ModulusSize,
    {
        SubjectPublicKeyInfoOwned::from_der(public.to_public_key_der().unwrap().as_bytes()).unwrap()
    }

    /// `spki` with another algorithm identifier (same key bytes).
    fn with_algorithm(
        spki: &SubjectPublicKeyInfoOwned,
        oid: ObjectIdentifier,
        curve: Option<ObjectIdentifier>,
    ) -> SubjectPublicKeyInfoOwned {
        SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid,
                parameters: curve.map(|c| der::Any::from(&c)),
            },
            subject_public_key: spki.subject_public_key.clone(),
        }
    }

    /// `spki` with `point` as its key bytes.
    fn with_point(spki: &SubjectPublicKeyInfoOwned, point: &[u8]) -> SubjectPublicKeyInfoOwned {
        SubjectPublicKeyInfoOwned {
            algorithm: spki.algorithm.clone(),
            subject_public_key: der::asn1::BitString::from_bytes(point).unwrap(),
        }
    }

    /// A PKCS#8 EC key with `scalar` and, in its `ECPrivateKey`, `public` as its public key.
    fn ec_pkcs8(curve: ObjectIdentifier, scalar: &[u8], public: Option<&[u8]>) -> Vec<u8> {
        let ec = sec1::EcPrivateKey {
            private_key: scalar,
            parameters: Some(sec1::EcParameters::NamedCurve(curve)),
            public_key: public,
        }
        .to_der()
        .unwrap();
        PrivateKeyInfoRef::new(
            spki::AlgorithmIdentifierRef {
                oid: EC_PUBLIC_KEY,
                parameters: Some((&curve).into()),
            },
            OctetStringRef::new(&ec).unwrap(),
        )
        .to_der()
        .unwrap()
    }

    /// The check as it was before the public half was kept: the secret decoded from PKCS#8
    /// (as `from_pkcs8_der` checks it), its public key derived, and the certificate's
    /// `SubjectPublicKeyInfo` re-encoded and decoded.
    fn reference_check<C>(pkcs8: &[u8], spki: &SubjectPublicKeyInfoOwned) -> bool
    where
        C: AssociatedOid + CurveArithmetic,
        AffinePoint<C>: FromSec1Point<C> + ToSec1Point<C>,
        FieldBytesSize<C>: ModulusSize,
    {
        use p256::pkcs8::DecodePrivateKey;
        use spki::DecodePublicKey;
        let secret = SecretKey::<C>::from_pkcs8_der(pkcs8).unwrap();
        PublicKey::<C>::from_public_key_der(&spki.to_der().unwrap())
            .is_ok_and(|public| public == secret.public_key())
    }

    /// Every matching and mismatching case for one curve: `a` and `b` are two scalars,
    /// `other` another curve's OID.
    fn ec_cases<C>(a: &[u8], b: &[u8], other: ObjectIdentifier)
    where
        C: AssociatedOid + CurveArithmetic,
        AffinePoint<C>: FromSec1Point<C> + ToSec1Point<C>,
        FieldBytesSize<C>: ModulusSize,
    {
        let a = SecretKey::<C>::from_slice(a).unwrap();
        let b = SecretKey::<C>::from_slice(b).unwrap();
        let a_pkcs8 = a.to_pkcs8_der().unwrap();
        let key = PrivateKey::from_pkcs8_der(a_pkcs8.as_bytes()).unwrap();
        let (a_spki, b_spki) = (ec_spki(&a.public_key()), ec_spki(&b.public_key()));
        let compressed = |k: &SecretKey<C>| {
            let point: Sec1Point<C> = k.public_key().to_sec1_point(true);
            point.as_bytes().to_vec()
        };
        let cases = [
            // Its own key, uncompressed (as certificates carry it) and compressed.
            (a_spki.clone(), Ok(())),
            (with_point(&a_spki, &compressed(&a)), Ok(())),
            // Another key of the same curve, either way.
            (b_spki.clone(), Err(KeyError::Mismatch)),
            (
                with_point(&a_spki, &compressed(&b)),
                Err(KeyError::Mismatch),
            ),
            // The right point under another curve, another algorithm, or no curve at all.
            (
                with_algorithm(&a_spki, EC_PUBLIC_KEY, Some(other)),
                Err(KeyError::Mismatch),
            ),
            (with_algorithm(&a_spki, RSA, None), Err(KeyError::Mismatch)),
            (
                with_algorithm(&a_spki, EC_PUBLIC_KEY, None),
                Err(KeyError::Mismatch),
            ),
            // Not a point: truncated, empty, the identity.
            (
                with_point(&a_spki, &a_spki.subject_public_key.raw_bytes()[..10]),
                Err(KeyError::Mismatch),
            ),
            (with_point(&a_spki, &[]), Err(KeyError::Mismatch)),
            (with_point(&a_spki, &[0]), Err(KeyError::Mismatch)),
        ];
        for (i, (spki, verdict)) in cases.iter().enumerate() {
            assert_eq!(&key.check_matches(spki), verdict, "case {i}");
            assert_eq!(
                reference_check::<C>(a_pkcs8.as_bytes(), spki),
                verdict.is_ok(),
                "case {i}: the check as it was says otherwise"
            );
        }

        // Without the optional public key in its ECPrivateKey, the key reads and matches
        // the same.
        let scalar = a.to_bytes();
        let bare = PrivateKey::from_pkcs8_der(&ec_pkcs8(C::OID, &scalar, None)).unwrap();
        assert_eq!(bare.check_matches(&a_spki), Ok(()));
        assert_eq!(bare.check_matches(&b_spki), Err(KeyError::Mismatch));
        // With it compressed, too.
        let a_compressed = compressed(&a);
        let packed = ec_pkcs8(C::OID, &scalar, Some(&a_compressed));
        assert_eq!(
            PrivateKey::from_pkcs8_der(&packed)
                .unwrap()
                .check_matches(&a_spki),
            Ok(())
        );
        // A forged key, carrying another key's public half, is refused when read (as
        // RustCrypto refuses it), whichever encoding the forgery uses.
        let b_point: Sec1Point<C> = b.public_key().to_sec1_point(false);
        for forged in [b_point.as_bytes(), &compressed(&b), &[4, 1, 2][..]] {
            let forged = ec_pkcs8(C::OID, &scalar, Some(forged));
            assert_eq!(
                PrivateKey::from_pkcs8_der(&forged).unwrap_err(),
                KeyError::MalformedPrivateKey
            );
            assert!(
                <SecretKey<C> as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(&forged).is_err()
            );
        }
        // A scalar out of range (zero) is refused.
        let zero = vec![0; scalar.len()];
        assert_eq!(
            PrivateKey::from_pkcs8_der(&ec_pkcs8(C::OID, &zero, None)).unwrap_err(),
            KeyError::MalformedPrivateKey
        );
        // The ECPrivateKey naming another curve than the PKCS#8 header is refused.
        let mixed = ec_pkcs8(C::OID, &scalar, None);
        let mixed = {
            let info = PrivateKeyInfoRef::from_der(&mixed).unwrap();
            let mut ec = sec1::EcPrivateKey::from_der(info.private_key.as_bytes()).unwrap();
            ec.parameters = Some(sec1::EcParameters::NamedCurve(other));
            let ec = ec.to_der().unwrap();
            PrivateKeyInfoRef::new(info.algorithm, OctetStringRef::new(&ec).unwrap())
                .to_der()
                .unwrap()
        };
        assert_eq!(
            PrivateKey::from_pkcs8_der(&mixed).unwrap_err(),
            KeyError::MalformedPrivateKey
        );
    }

    #[test]
    fn p256_keys_match_their_own_public_key_only() {
        ec_cases::<p256::NistP256>(&[0x11; 32], &[0x22; 32], P384);
    }

    #[test]
    fn p384_keys_match_their_own_public_key_only() {
        ec_cases::<p384::NistP384>(&[0x33; 48], &[0x44; 48], P256);
    }

    #[test]
    fn ec_keys_never_match_another_curve_or_rsa() {
        let p256 = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
        let p384 = p384::SecretKey::from_slice(&[0x11; 48]).unwrap();
        let p256_key = PrivateKey::from_pkcs8_der(p256.to_pkcs8_der().unwrap().as_bytes()).unwrap();
        let p384_key = PrivateKey::from_pkcs8_der(p384.to_pkcs8_der().unwrap().as_bytes()).unwrap();
        let rsa = rsa_leaf_spki();
        assert_eq!(
            p256_key.check_matches(&ec_spki(&p384.public_key())),
            Err(KeyError::Mismatch)
        );
        assert_eq!(
            p384_key.check_matches(&ec_spki(&p256.public_key())),
            Err(KeyError::Mismatch)
        );
        assert_eq!(p256_key.check_matches(&rsa), Err(KeyError::Mismatch));
        assert_eq!(p384_key.check_matches(&rsa), Err(KeyError::Mismatch));
    }

    const RSA_KEY: &[u8] = include_bytes!("../tests/data/go-spiffe/x509svid/key-pkcs8-rsa.pem");
    const RSA_LEAF: &[u8] = include_bytes!("../tests/data/go-spiffe/x509svid/good-leaf-only.pem");
    const OTHER_RSA_KEY: &[u8] = include_bytes!("../tests/data/jwt/rsa2048.key");

    /// The `SubjectPublicKeyInfo` of go-spiffe's RSA leaf (the public half of `RSA_KEY`).
    fn rsa_leaf_spki() -> SubjectPublicKeyInfoOwned {
        let blocks = crate::pem::parse(RSA_LEAF).unwrap();
        let cert = x509_cert::Certificate::from_der(&blocks[0].der).unwrap();
        cert.tbs_certificate().subject_public_key_info().clone()
    }

    #[test]
    fn rsa_keys_match_their_own_public_key_only() {
        let key = PrivateKey::from_pkcs8_pem(RSA_KEY).unwrap();
        let other = PrivateKey::from_pkcs8_pem(OTHER_RSA_KEY).unwrap();
        assert!(matches!(other.key_type(), KeyType::Rsa { bits: 2048 }));
        let spki = rsa_leaf_spki();
        assert_eq!(key.check_matches(&spki), Ok(()));
        assert_eq!(other.check_matches(&spki), Err(KeyError::Mismatch));

        let bits = spki.subject_public_key.as_bytes().unwrap();
        let public = RsaPublicKey::from_der(bits).unwrap();
        let encode = |modulus: &[u8], exponent: &[u8]| {
            let der = RsaPublicKey {
                modulus: UintRef::new(modulus).unwrap(),
                public_exponent: UintRef::new(exponent).unwrap(),
            }
            .to_der()
            .unwrap();
            with_point(&spki, &der)
        };
        // Re-encoded as it was: still a match.
        assert_eq!(
            key.check_matches(&encode(
                public.modulus.as_bytes(),
                public.public_exponent.as_bytes()
            )),
            Ok(())
        );
        // The same modulus with another exponent, or one bit of the modulus flipped.
        assert_eq!(
            key.check_matches(&encode(public.modulus.as_bytes(), &[3])),
            Err(KeyError::Mismatch)
        );
        let mut flipped = public.modulus.as_bytes().to_vec();
        *flipped.last_mut().unwrap() ^= 2;
        assert_eq!(
            key.check_matches(&encode(&flipped, public.public_exponent.as_bytes())),
            Err(KeyError::Mismatch)
        );
        // The right key under another algorithm, or bytes that are not an RSAPublicKey.
        assert_eq!(
            key.check_matches(&with_algorithm(&spki, EC_PUBLIC_KEY, Some(P256))),
            Err(KeyError::Mismatch)
        );
        assert_eq!(
            key.check_matches(&with_point(&spki, &bits[..20])),
            Err(KeyError::Mismatch)
        );
        // An EC key's SubjectPublicKeyInfo.
        let ec = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
        assert_eq!(
            key.check_matches(&ec_spki(&ec.public_key())),
            Err(KeyError::Mismatch)
        );
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
