//! [`Signer`]s backed by the crypto libraries rustls uses: `ring` (feature `ring`) and
//! `aws-lc-rs` (feature `aws-lc-rs`). Both sign ECDSA about three times faster than the
//! pure-Rust [`KeyPair`](super::KeyPair). One macro writes both, since the two libraries
//! share their API.

/// Defines a key-pair type over `$lib` (`ring` or `aws_lc_rs`); `$from_pkcs8` adapts the
/// one call whose arguments differ between them.
macro_rules! backend_key_pair {
    ($(#[$doc:meta])* $name:ident, $lib:ident, $from_pkcs8:expr) => {
        $(#[$doc])*
        pub struct $name {
            key: $lib::signature::EcdsaKeyPair,
            key_type: $crate::KeyType,
            pkcs8: ::zeroize::Zeroizing<Vec<u8>>,
            spki: Vec<u8>,
            rng: $lib::rand::SystemRandom,
        }

        impl $name {
            /// Generates a fresh key from the library's system random source.
            pub fn generate(key_type: $crate::KeyType) -> Result<Self, $crate::CaError> {
                let rng = $lib::rand::SystemRandom::new();
                let doc = $lib::signature::EcdsaKeyPair::generate_pkcs8(
                    Self::algorithm(key_type)?,
                    &rng,
                )
                .map_err(|_| $crate::CaError::Random)?;
                Self::from_pkcs8_der(doc.as_ref())
            }

            /// Reads a PKCS#8 DER key (P-256 or P-384). The library validates the key; the
            /// public key is taken from it as it is, with no second computation.
            pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, $crate::CaError> {
                use $lib::signature::KeyPair as _;
                let key_type = $crate::key::ec_curve_of_pkcs8(der)?;
                let rng = $lib::rand::SystemRandom::new();
                let from_pkcs8 = $from_pkcs8;
                let key = from_pkcs8(Self::algorithm(key_type)?, der, &rng)
                    .map_err(|_| $crate::KeyError::MalformedPrivateKey)?;
                let spki = $crate::key::ec_spki_der(key_type, key.public_key().as_ref())?;
                Ok(Self {
                    key,
                    key_type,
                    pkcs8: ::zeroize::Zeroizing::new(der.to_vec()),
                    spki,
                    rng,
                })
            }

            /// The secret key in the form an [`X509Svid`](crate::X509Svid) carries.
            pub fn to_private_key(&self) -> Result<$crate::PrivateKey, $crate::CaError> {
                Ok($crate::PrivateKey::from_pkcs8_der(&self.pkcs8)?)
            }

            /// The secret key as PKCS#8 PEM, wiped on drop.
            pub fn to_pkcs8_pem(&self) -> ::zeroize::Zeroizing<String> {
                ::zeroize::Zeroizing::new($crate::pem::encode("PRIVATE KEY", &self.pkcs8))
            }

            fn algorithm(
                key_type: $crate::KeyType,
            ) -> Result<&'static $lib::signature::EcdsaSigningAlgorithm, $crate::CaError> {
                match key_type {
                    $crate::KeyType::P256 => Ok(&$lib::signature::ECDSA_P256_SHA256_ASN1_SIGNING),
                    $crate::KeyType::P384 => Ok(&$lib::signature::ECDSA_P384_SHA384_ASN1_SIGNING),
                    other => Err($crate::CaError::UnsupportedKeyType(other)),
                }
            }
        }

        impl $crate::Signer for $name {
            fn key_type(&self) -> $crate::KeyType {
                self.key_type
            }

            fn public_key_der(&self) -> Vec<u8> {
                self.spki.clone()
            }

            fn sign(&self, message: &[u8]) -> Result<Vec<u8>, $crate::CaError> {
                self.key
                    .sign(&self.rng, message)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| $crate::CaError::Signing)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("key_type", &self.key_type)
                    .field("secret", &"[redacted]")
                    .finish_non_exhaustive()
            }
        }
    };
}

#[cfg(feature = "ring")]
backend_key_pair!(
    /// An ECDSA key pair (P-256 or P-384) signing with `ring` (feature `ring`). The PKCS#8
    /// bytes are zeroized on drop and never shown by `Debug`.
    RingKeyPair,
    ring,
    |alg, der, rng| ring::signature::EcdsaKeyPair::from_pkcs8(alg, der, rng)
);

#[cfg(feature = "aws-lc-rs")]
backend_key_pair!(
    /// An ECDSA key pair (P-256 or P-384) signing with `aws-lc-rs` (feature `aws-lc-rs`).
    /// The PKCS#8 bytes are zeroized on drop and never shown by `Debug`.
    AwsLcKeyPair,
    aws_lc_rs,
    |alg, der, _rng: &aws_lc_rs::rand::SystemRandom| {
        aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, der)
    }
);

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use crate::{Authority, KeyType, Signer, SpiffeId, TrustDomain};

    /// Issues a chain with `signer` as the root key and validates it with `algorithms`.
    fn issue_and_validate(
        signer: Arc<dyn Signer>,
        algorithms: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm],
    ) {
        let root = Authority::new_root_with_signer(
            TrustDomain::new("td").unwrap(),
            Duration::from_secs(600),
            signer,
        )
        .unwrap();
        let svid = root
            .issue(
                &SpiffeId::new("spiffe://td/w").unwrap(),
                Duration::from_secs(60),
            )
            .unwrap();
        let roots = [root.root().unwrap().clone()];
        crate::validate_path(
            svid.leaf(),
            &[],
            &roots,
            SystemTime::now(),
            algorithms,
            crate::Usage::ServerAuth,
        )
        .unwrap();
    }

    #[cfg(feature = "ring")]
    #[test]
    fn ring_keys_sign_chains_and_round_trip() {
        use super::RingKeyPair;
        for key_type in [KeyType::P256, KeyType::P384] {
            issue_and_validate(
                Arc::new(RingKeyPair::generate(key_type).unwrap()),
                crate::ring_algorithms(),
            );
        }
        let ring_key = RingKeyPair::generate(KeyType::P256).unwrap();
        let rc = crate::KeyPair::from_pkcs8_pem(ring_key.to_pkcs8_pem().as_bytes()).unwrap();
        assert_eq!(rc.public_key_der(), ring_key.public_key_der());
        let back = RingKeyPair::from_pkcs8_der(&rc.to_pkcs8_der()).unwrap();
        assert_eq!(back.public_key_der(), ring_key.public_key_der());
        assert!(format!("{back:?}").contains("redacted"));
    }

    #[cfg(feature = "aws-lc-rs")]
    #[test]
    fn aws_lc_keys_sign_chains_and_round_trip() {
        use super::AwsLcKeyPair;
        for key_type in [KeyType::P256, KeyType::P384] {
            issue_and_validate(
                Arc::new(AwsLcKeyPair::generate(key_type).unwrap()),
                crate::aws_lc_rs_algorithms(),
            );
        }
        let aws_key = AwsLcKeyPair::generate(KeyType::P384).unwrap();
        let rc = crate::KeyPair::from_pkcs8_pem(aws_key.to_pkcs8_pem().as_bytes()).unwrap();
        assert_eq!(rc.public_key_der(), aws_key.public_key_der());
        assert!(format!("{aws_key:?}").contains("redacted"));
    }
}
