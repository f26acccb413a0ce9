//! The Workload API's JWT methods, meshid's client against meshid's server: tokens per
//! identity, the audience rule, picking one identity, the token cache, the JWT bundles
//! stream, server-side validation, and an agent handing a caller only its own entries.

#![cfg(all(unix, feature = "workload-api", feature = "ca", feature = "ring"))]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshid::jwt::{JwtBundles, JwtSvid, JwtValidator};
use meshid::serve::{JwtIssuer, MintError};
use meshid::watch::Watch;
use meshid::workload::{Endpoint, WorkloadApiClient, WorkloadApiError, WorkloadApiServer};
use meshid::{
    Authority, BundleSet, JwtKey, JwtSvidRequest, KeyType, RotationPolicy, Rotator, RotatorConfig,
    SpiffeId, SvidStore, TrustDomain, X509Bundle,
};
use tokio::sync::oneshot;
use tokio_stream::StreamExt;

const HOUR: Duration = Duration::from_secs(3600);

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn aud(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| (*s).to_owned()).collect()
}

fn socket_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "meshid-jwt-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Mints with a short TTL (the cache test's issuer), counting what it mints.
struct ShortLived {
    ca: Arc<Authority>,
    ttl: Duration,
    minted: AtomicUsize,
}

impl JwtIssuer for ShortLived {
    fn mint_jwt_svid(&self, id: &SpiffeId, audience: &[String]) -> Result<JwtSvid, MintError> {
        self.minted.fetch_add(1, Ordering::SeqCst);
        let request = JwtSvidRequest::new(id.clone(), audience.iter().cloned()).ttl(self.ttl);
        Ok(self.ca.mint_jwt_svid_for(&request)?)
    }
}

struct Served {
    ca: Arc<Authority>,
    jwt_bundles: Arc<Watch<JwtBundles>>,
    issuer: Arc<ShortLived>,
    _rotators: Vec<Rotator>,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
}

impl Served {
    /// A root for example.org with a JWT key, the workload's IDs issued, and a server
    /// minting JWT-SVIDs that live `jwt_ttl`.
    async fn start(ids: &[&str], jwt_ttl: Duration) -> Self {
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Arc::new(
            Authority::new_root(td.clone(), HOUR, KeyType::P256)
                .unwrap()
                .with_jwt_key(JwtKey::generate(KeyType::P256).unwrap()),
        );
        let mut bundles = BundleSet::new();
        bundles.insert(X509Bundle::from_authorities(td, ca.root().cloned()).unwrap());
        let mut api = WorkloadApiServer::new(bundles.clone());
        let mut rotators = Vec::new();
        for s in ids {
            let store = Arc::new(SvidStore::new());
            rotators.push(Rotator::start(RotatorConfig {
                id: id(s),
                ttl: HOUR,
                policy: RotationPolicy::default(),
                issuer: ca.clone(),
                bundles: Arc::new(bundles.clone()),
                algorithms: meshid::ring_algorithms(),
                store: Arc::clone(&store),
            }));
            assert_ne!(store.wait_for_change(0, Duration::from_secs(10)), 0);
            api = api.with_svid(store);
        }
        let jwt_bundles = Arc::new(Watch::new());
        jwt_bundles.publish(std::iter::once(ca.spiffe_bundle()).collect::<JwtBundles>());
        let issuer = Arc::new(ShortLived {
            ca: Arc::clone(&ca),
            ttl: jwt_ttl,
            minted: AtomicUsize::new(0),
        });
        let api = api.with_jwt(issuer.clone(), jwt_bundles.clone());
        let path = socket_path();
        let stop = serve(api, &path).await;
        Self {
            ca,
            jwt_bundles,
            issuer,
            _rotators: rotators,
            path,
            stop: Some(stop),
        }
    }

    async fn client(&self) -> WorkloadApiClient {
        let endpoint = Endpoint::parse(&format!("unix://{}", self.path.display())).unwrap();
        WorkloadApiClient::connect(&endpoint).await.unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(api: WorkloadApiServer, path: &Path) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel();
    let owned = PathBuf::from(path);
    tokio::spawn(api.serve(owned, async {
        let _ = stopped.await;
    }));
    for _ in 0..200 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop
}

fn code(err: &WorkloadApiError) -> Option<(tonic::Code, String)> {
    match err {
        WorkloadApiError::Status(s) => Some((s.code(), s.message().to_owned())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_per_identity_audience_required_and_a_pick_among_one_s_own() {
    let served = Served::start(
        &["spiffe://example.org/web", "spiffe://example.org/db"],
        HOUR / 12,
    )
    .await;
    let mut client = served.client().await;
    let svids = client
        .fetch_jwt_svids(&aud(&["a", "b"]), None)
        .await
        .unwrap();
    let ids: Vec<&str> = svids.iter().map(|s| s.id().as_str()).collect();
    assert_eq!(ids, ["spiffe://example.org/web", "spiffe://example.org/db"]);
    let bundle = served.ca.spiffe_bundle();
    for svid in &svids {
        assert_eq!(svid.audience(), ["a", "b"]);
        let v = JwtValidator::new("b", meshid::ring_algorithms());
        v.validate(svid.token(), &bundle, SystemTime::now())
            .unwrap();
    }
    // Validated by the client against the server's JWT bundles.
    let validated = client
        .fetch_validated_jwt_svids(&aud(&["a"]), None, meshid::ring_algorithms())
        .await
        .unwrap();
    assert_eq!(validated.len(), 2);

    let err = client.fetch_jwt_svids(&[], None).await.unwrap_err();
    assert_eq!(
        code(&err),
        Some((
            tonic::Code::InvalidArgument,
            "audience must be specified".into()
        ))
    );
    let db = id("spiffe://example.org/db");
    let picked = client
        .fetch_jwt_svids(&aud(&["a"]), Some(&db))
        .await
        .unwrap();
    assert_eq!(picked.len(), 1);
    assert_eq!(picked[0].id(), &db);
    let err = client
        .fetch_jwt_svids(&aud(&["a"]), Some(&id("spiffe://example.org/other")))
        .await
        .unwrap_err();
    assert_eq!(
        code(&err).unwrap().0,
        tonic::Code::PermissionDenied,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_reused_until_half_its_lifetime_then_minted_anew() {
    let served = Served::start(&["spiffe://example.org/web"], Duration::from_secs(4)).await;
    let mut client = served.client().await;
    let first = client
        .fetch_jwt_svids(&aud(&["a", "b"]), None)
        .await
        .unwrap();
    let again = client
        .fetch_jwt_svids(&aud(&["b", "a", "b"]), None)
        .await
        .unwrap();
    assert_eq!(
        first[0].token(),
        again[0].token(),
        "same identity, same audience set"
    );
    assert_eq!(served.issuer.minted.load(Ordering::SeqCst), 1);
    let other = client.fetch_jwt_svids(&aud(&["c"]), None).await.unwrap();
    assert_ne!(first[0].token(), other[0].token());
    assert_eq!(served.issuer.minted.load(Ordering::SeqCst), 2);
    // `iat` is whole seconds before the first fetch: half of 4 s is over 2.1 s later.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = client
        .fetch_jwt_svids(&aud(&["a", "b"]), None)
        .await
        .unwrap();
    assert_ne!(
        first[0].token(),
        later[0].token(),
        "past half-life: a new token"
    );
    assert!(later[0].expiry() > first[0].expiry());
    assert_eq!(served.issuer.minted.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_bundles_stream_is_resent_when_a_key_is_added() {
    let served = Served::start(&["spiffe://example.org/web"], HOUR / 12).await;
    let mut client = served.client().await;
    let td = TrustDomain::new("example.org").unwrap();
    let mut stream = client.watch_jwt_bundles().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(
        first.get(&td).unwrap(),
        served.ca.spiffe_bundle().jwt_authorities()
    );
    let cached = client.fetch_jwt_svids(&aud(&["a"]), None).await.unwrap();

    let added = JwtKey::generate(KeyType::P256).unwrap();
    let bundle = served
        .ca
        .spiffe_bundle()
        .with_jwt_authority(added.authority().clone());
    served
        .jwt_bundles
        .publish(std::iter::once(bundle).collect::<JwtBundles>());
    let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a new message when the bundles change")
        .unwrap()
        .unwrap();
    let kids: Vec<&str> = next
        .get(&td)
        .unwrap()
        .iter()
        .map(meshid::JwtAuthority::key_id)
        .collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&added.key_id()));
    // Tokens minted under the old bundles are not reused.
    let fresh = client.fetch_jwt_svids(&aud(&["a"]), None).await.unwrap();
    assert_eq!(served.issuer.minted.load(Ordering::SeqCst), 2);
    drop((cached, fresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_accepts_with_claims_and_refuses_with_the_reason() {
    use prost_types::value::Kind;
    let served = Served::start(&["spiffe://example.org/web"], HOUR / 12).await;
    let mut client = served.client().await;
    let token = client
        .fetch_jwt_svids(&aud(&["a", "b"]), None)
        .await
        .unwrap()
        .remove(0);
    let (who, claims) = client.validate_jwt_svid(token.token(), "b").await.unwrap();
    assert_eq!(who.as_str(), "spiffe://example.org/web");
    assert_eq!(
        claims.fields["sub"].kind,
        Some(Kind::StringValue("spiffe://example.org/web".into()))
    );
    let Some(Kind::ListValue(list)) = &claims.fields["aud"].kind else {
        panic!("aud is a list: {claims:?}")
    };
    assert_eq!(list.values.len(), 2);
    let exp = token
        .expiry()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    #[allow(clippy::cast_precision_loss)]
    let exp = exp.as_secs() as f64;
    assert_eq!(claims.fields["exp"].kind, Some(Kind::NumberValue(exp)));

    let err = client
        .validate_jwt_svid(token.token(), "c")
        .await
        .unwrap_err();
    let (c, message) = code(&err).unwrap();
    assert_eq!(c, tonic::Code::InvalidArgument);
    assert!(message.contains("aud"), "{message}");
    for (token, audience, want) in [
        ("", "a", "svid must be specified"),
        ("x.y.z", "", "audience must be specified"),
    ] {
        let err = client.validate_jwt_svid(token, audience).await.unwrap_err();
        assert_eq!(
            code(&err),
            Some((tonic::Code::InvalidArgument, want.into()))
        );
    }
    // Another trust domain's token: no bundle for it.
    let other = Authority::new_root(TrustDomain::new("other.org").unwrap(), HOUR, KeyType::P256)
        .unwrap()
        .with_jwt_key(JwtKey::generate(KeyType::P256).unwrap());
    let foreign = other
        .mint_jwt_svid(&id("spiffe://other.org/x"), &["a"], Duration::from_secs(60))
        .unwrap();
    let err = client
        .validate_jwt_svid(foreign.token(), "a")
        .await
        .unwrap_err();
    assert_eq!(code(&err).unwrap().0, tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_calls_without_the_header_or_without_jwt_are_refused() {
    // A server without `with_jwt`: Unimplemented.
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), HOUR, KeyType::P256).unwrap();
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
        .into_iter()
        .collect();
    let path = socket_path();
    let _stop = serve(WorkloadApiServer::new(bundles), &path).await;
    let endpoint = Endpoint::parse(&format!("unix://{}", path.display())).unwrap();
    let mut client = WorkloadApiClient::connect(&endpoint).await.unwrap();
    for err in [
        client
            .fetch_jwt_svids(&aud(&["a"]), None)
            .await
            .unwrap_err(),
        client.fetch_jwt_bundles().await.unwrap_err(),
        client.validate_jwt_svid("x.y.z", "a").await.unwrap_err(),
    ] {
        assert_eq!(code(&err).unwrap().0, tonic::Code::Unimplemented, "{err}");
        assert!(!err.is_retryable());
    }
}

#[cfg(feature = "agent")]
mod agent {
    use super::*;
    use meshid::agent::{AttestError, Attestor, Registry, Selector, Selectors};
    use meshid::serve::Caller;
    use std::sync::Mutex;

    /// Says the caller is whoever the test says it is now.
    struct Switch(Mutex<&'static str>);

    impl Attestor for Switch {
        fn attest(&self, _: &Caller) -> Result<Selectors, AttestError> {
            let who = *self.0.lock().unwrap();
            Ok([Selector::new("unix", format!("uid:{who}"))]
                .into_iter()
                .collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_attested_caller_gets_tokens_for_its_own_entries_only() {
        let td = TrustDomain::new("example.org").unwrap();
        let ca = Arc::new(
            Authority::new_root(td.clone(), HOUR, KeyType::P256)
                .unwrap()
                .with_jwt_key(JwtKey::generate(KeyType::P256).unwrap()),
        );
        let registry = Registry::parse(
            r#"
[[entry]]
spiffe_id = "spiffe://example.org/a/web"
selectors = ["unix:uid:1"]
[[entry]]
spiffe_id = "spiffe://example.org/b/db"
selectors = ["unix:uid:2"]
[[entry]]
spiffe_id = "spiffe://example.org/a/admin"
selectors = ["unix:uid:1"]
hint = "admin"
"#,
            &td,
        )
        .unwrap();
        let switch = Arc::new(Switch(Mutex::new("1")));
        let agent = meshid::agent::Agent::start(
            Arc::clone(&ca),
            &registry,
            switch.clone(),
            meshid::ring_algorithms(),
        )
        .unwrap();
        agent.wait_issued(Duration::from_secs(10)).unwrap();
        let shared = Arc::new(agent.clone());
        let jwt_bundles: JwtBundles = std::iter::once(ca.spiffe_bundle()).collect();
        let api = WorkloadApiServer::from_sources(shared.clone(), shared)
            .with_jwt(ca.clone(), Arc::new(jwt_bundles));
        let path = socket_path();
        let _stop = serve(api, &path).await;
        let endpoint = Endpoint::parse(&format!("unix://{}", path.display())).unwrap();
        let mut client = WorkloadApiClient::connect(&endpoint).await.unwrap();

        let svids = client.fetch_jwt_svids(&aud(&["x"]), None).await.unwrap();
        let ids: Vec<&str> = svids.iter().map(|s| s.id().as_str()).collect();
        assert_eq!(
            ids,
            ["spiffe://example.org/a/web", "spiffe://example.org/a/admin"]
        );
        let err = client
            .fetch_jwt_svids(&aud(&["x"]), Some(&id("spiffe://example.org/b/db")))
            .await
            .unwrap_err();
        assert_eq!(code(&err).unwrap().0, tonic::Code::PermissionDenied);

        *switch.0.lock().unwrap() = "2";
        let svids = client.fetch_jwt_svids(&aud(&["x"]), None).await.unwrap();
        let ids: Vec<&str> = svids.iter().map(|s| s.id().as_str()).collect();
        assert_eq!(ids, ["spiffe://example.org/b/db"]);
        assert_eq!(client.fetch_jwt_bundles().await.unwrap().len(), 1);

        *switch.0.lock().unwrap() = "3";
        let err = client
            .fetch_jwt_svids(&aud(&["x"]), None)
            .await
            .unwrap_err();
        assert_eq!(code(&err).unwrap().0, tonic::Code::PermissionDenied);
        let err = client.fetch_jwt_bundles().await.unwrap_err();
        assert_eq!(code(&err).unwrap().0, tonic::Code::PermissionDenied);
        agent.stop();
    }
}
