//! The JWT methods of the Workload API server: `FetchJWTSVID` (through a bounded token
//! cache), `FetchJWTBundles` (a stream) and `ValidateJWTSVID`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls_pki_types::SignatureVerificationAlgorithm;
use serde_json::Value;
use tokio::sync::mpsc;
use tonic::{Request, Status};

use super::State;
use crate::jwt::{JwtBundles, JwtSvid, JwtValidator};
use crate::serve::{Caller, JwtBundleFeed, JwtIssuer, StreamKind};
use crate::workload::proto::{
    JwtBundlesResponse, JwtSvidMessage, JwtSvidRequest, JwtSvidResponse, ValidateJwtSvidRequest,
    ValidateJwtSvidResponse,
};
use crate::workload::token_cache::TokenCache;
use crate::{SpiffeBundle, SpiffeId};

/// The most tokens the cache holds.
pub(super) const MAX_CACHED_TOKENS: usize = 1024;
/// The most bytes (tokens, IDs and audiences) the cache holds.
pub(super) const MAX_CACHED_BYTES: usize = 4 * 1024 * 1024;

/// What a server needs to serve JWT-SVIDs.
pub(super) struct Jwt {
    pub(super) issuer: Arc<dyn JwtIssuer>,
    pub(super) bundles: Arc<dyn JwtBundleFeed>,
    pub(super) algorithms: &'static [&'static dyn SignatureVerificationAlgorithm],
    pub(super) cache: Mutex<TokenCache<(SpiffeId, Vec<String>)>>,
}

impl Jwt {
    pub(super) fn new(issuer: Arc<dyn JwtIssuer>, bundles: Arc<dyn JwtBundleFeed>) -> Self {
        Self {
            issuer,
            bundles,
            algorithms: crate::workload::source::default_algorithms(),
            cache: Mutex::new(TokenCache::new(MAX_CACHED_TOKENS, MAX_CACHED_BYTES)),
        }
    }

    /// A token for `id` and the audience set `audience` (sorted, no repeats): the cached
    /// one until half its lifetime has passed, else a new one (cached in turn).
    fn token(&self, id: &SpiffeId, audience: &[String]) -> Result<JwtSvid, Status> {
        let now = SystemTime::now();
        // Tokens minted under other bundles (a key added or retired) are not reused.
        let generation = self.bundles.changes().generation();
        let key = (id.clone(), audience.to_vec());
        if let Some(svid) = self.lock().get(&key, now, generation) {
            return Ok(svid);
        }
        let svid = self.issuer.mint_jwt_svid(id, audience).map_err(|e| {
            tracing::error!(%id, error = %e, "minting a JWT-SVID failed");
            Status::internal(format!("could not mint a JWT-SVID for {id}: {e}"))
        })?;
        let key_bytes = id.as_str().len() + audience.iter().map(String::len).sum::<usize>();
        self.lock()
            .insert(key, key_bytes, svid.clone(), now, generation);
        Ok(svid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenCache<(SpiffeId, Vec<String>)>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn audience_required() -> Status {
    Status::invalid_argument("audience must be specified")
}

impl State {
    fn jwt(&self) -> Result<&Jwt, Status> {
        self.jwt
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this server issues X509-SVIDs only"))
    }

    /// `FetchJWTSVID`: one token per identity of the caller (or the one it names).
    pub(super) fn fetch_jwt_svid(
        &self,
        request: &Request<JwtSvidRequest>,
    ) -> Result<JwtSvidResponse, Status> {
        let jwt = self.jwt()?;
        self.admit(request)?;
        let message = request.get_ref();
        if message.audience.is_empty() {
            return Err(audience_required());
        }
        if message.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument(
                "audience values must not be empty",
            ));
        }
        let wanted = match message.spiffe_id.as_str() {
            "" => None,
            id => Some(SpiffeId::new(id).map_err(|e| {
                Status::invalid_argument(format!("invalid requested SPIFFE ID: {e}"))
            })?),
        };
        let audience: Vec<String> = message
            .audience
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let identities = self
            .subscribe(&super::caller_of(request))
            .map_err(|s| self.refused_at_start(s))?
            .identities;
        let mut svids = Vec::new();
        for identity in &identities {
            let id = identity.svid.id();
            if wanted.as_ref().is_some_and(|w| w != id) {
                continue;
            }
            let svid = jwt.token(id, &audience)?;
            svids.push(JwtSvidMessage {
                spiffe_id: id.to_string(),
                svid: svid.token().to_owned(),
                hint: identity.hint.clone(),
            });
        }
        if svids.is_empty() {
            // As SPIRE: an ID the caller holds no identity for is not its to ask for.
            tracing::info!(
                requested = wanted.as_ref().map_or("", SpiffeId::as_str),
                reason = "no identity issued for the ID asked",
                "JWT-SVID refused"
            );
            return Err(self.refused_at_start(Status::permission_denied(format!(
                "no identity issued for {}",
                wanted.map(|w| w.to_string()).unwrap_or_default()
            ))));
        }
        Ok(JwtSvidResponse { svids })
    }

    /// `ValidateJWTSVID`: the token checked by every rule against the server's JWT
    /// bundles, for the audience given.
    pub(super) fn validate_jwt_svid(
        &self,
        request: &Request<ValidateJwtSvidRequest>,
    ) -> Result<ValidateJwtSvidResponse, Status> {
        let jwt = self.jwt()?;
        self.admit(request)?;
        let message = request.get_ref();
        if message.audience.is_empty() {
            return Err(audience_required());
        }
        if message.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let bundles = jwt.bundles.jwt_bundles().unwrap_or_default();
        let validator = JwtValidator::new(message.audience.clone(), jwt.algorithms);
        let svid = validator
            .validate(&message.svid, &*bundles, SystemTime::now())
            .map_err(|e| {
                tracing::info!(reason = %e, "JWT-SVID validation refused a token");
                Status::invalid_argument(e.to_string())
            })?;
        Ok(ValidateJwtSvidResponse {
            spiffe_id: svid.id().to_string(),
            claims: Some(claims_struct(svid.claims())),
        })
    }

    /// Streams the JWT bundles to `caller`: now, then whenever they change, until the
    /// caller leaves, loses its last identity or the server closes.
    pub(super) fn jwt_bundles_stream(
        self: &Arc<Self>,
        caller: Caller,
    ) -> Result<mpsc::Receiver<Result<JwtBundlesResponse, Status>>, Status> {
        let jwt = self.jwt()?;
        let mut seen = jwt.bundles.changes().generation();
        let mut mine = self
            .subscribe(&caller)
            .map_err(|s| self.refused_at_start(s))?;
        let mut sent = jwt.bundles.jwt_bundles();
        let first = jwt_bundles_message(sent.as_deref());
        let (tx, rx) = mpsc::channel(1);
        let state = Arc::clone(self);
        tokio::spawn(async move {
            let Some(jwt) = state.jwt.as_ref() else {
                return;
            };
            let seen_by = state.observer.stream(StreamKind::JwtBundles);
            let mut closed = state.closed.clone();
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            seen_by.observer().pushed(StreamKind::JwtBundles, None);
            loop {
                tokio::select! {
                    _ = mine.changes.changed(0) => {}
                    _ = jwt.bundles.changes().changed(seen) => {}
                    () = crate::serve::closing(&mut closed) => return,
                    () = tx.closed() => return,
                }
                let changed_at = crate::serve::changed_at(&[jwt.bundles.changes()]);
                seen = jwt.bundles.changes().generation();
                match state.subscribe(&caller) {
                    Ok(sub) => mine = sub,
                    Err(status) => {
                        tracing::info!(?caller, %status, "Workload API stream ended: no identity left");
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
                let now = jwt.bundles.jwt_bundles();
                if now.as_deref() == sent.as_deref() {
                    continue;
                }
                let message = jwt_bundles_message(now.as_deref());
                sent = now;
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
                seen_by
                    .observer()
                    .pushed(StreamKind::JwtBundles, changed_at);
            }
        });
        Ok(rx)
    }
}

/// The `FetchJWTBundles` message: each trust domain's JWT authorities as a SPIFFE bundle
/// (JWKS, `use: jwt-svid` keys), keyed by trust-domain ID.
fn jwt_bundles_message(bundles: Option<&JwtBundles>) -> JwtBundlesResponse {
    let bundles = bundles
        .into_iter()
        .flat_map(JwtBundles::iter)
        .map(|(td, authorities)| {
            let bundle = authorities
                .iter()
                .fold(SpiffeBundle::new(td.clone()), |b, a| {
                    b.with_jwt_authority(a.clone())
                });
            (td.id().to_string(), bundle.to_json().into_bytes())
        })
        .collect();
    JwtBundlesResponse { bundles }
}

/// JSON claims as a protobuf `Struct`, value for value.
pub(crate) fn claims_struct(claims: &serde_json::Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: claims
            .iter()
            .map(|(k, v)| (k.clone(), json_to_proto(v)))
            .collect(),
    }
}

fn json_to_proto(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        // protobuf's only number is a double (integers beyond 2^53 round, as JSON
        // parsers in most languages do).
        #[allow(clippy::cast_precision_loss)]
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_proto).collect(),
        }),
        Value::Object(map) => Kind::StructValue(claims_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_convert_value_for_value() {
        use prost_types::value::Kind;
        let json: serde_json::Map<String, Value> = serde_json::from_str(
            r#"{"s":"x","i":42,"f":1.5,"t":true,"n":null,"a":[1,"b",[false]],"o":{"k":{"z":-3}}}"#,
        )
        .unwrap();
        let s = claims_struct(&json);
        let kind = |k: &str| s.fields[k].kind.clone().unwrap();
        assert_eq!(kind("s"), Kind::StringValue("x".into()));
        assert_eq!(kind("i"), Kind::NumberValue(42.0));
        assert_eq!(kind("f"), Kind::NumberValue(1.5));
        assert_eq!(kind("t"), Kind::BoolValue(true));
        assert_eq!(kind("n"), Kind::NullValue(0));
        let Kind::ListValue(list) = kind("a") else {
            panic!()
        };
        assert_eq!(list.values.len(), 3);
        assert_eq!(
            list.values[2].kind,
            Some(Kind::ListValue(prost_types::ListValue {
                values: vec![prost_types::Value {
                    kind: Some(Kind::BoolValue(false))
                }]
            }))
        );
        let Kind::StructValue(o) = kind("o") else {
            panic!()
        };
        let Some(Kind::StructValue(k)) = o.fields["k"].kind.clone() else {
            panic!()
        };
        assert_eq!(k.fields["z"].kind, Some(Kind::NumberValue(-3.0)));
    }
}
