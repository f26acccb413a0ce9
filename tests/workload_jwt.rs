//! The Workload API's JWT methods, meshid's client against meshid's server: tokens per
//! identity, the audience rule, picking one identity, the token cache, the JWT bundles
//! stream, server-side validation, and an agent handing a caller only its own entries; and
//! the live `JwtSource` over them: bundles that follow the server's, a token cache by the
//! half-life rule, local validation, reconnection after a restart.

#![cfg(all(unix, feature = "workload-api", feature = "ca", feature = "ring"))]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshid::jwt::{JwtBundleSource, JwtBundles, JwtError, JwtSvid, JwtValidator};
use meshid::serve::{JwtIssuer, MintError};
use meshid::watch::Watch;
use meshid::workload::{
    Endpoint, JwtSource, JwtSourceOptions, WorkloadApiClient, WorkloadApiError, WorkloadApiServer,
};
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
    bundles: BundleSet,
    stores: Vec<Arc<SvidStore>>,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), meshid::serve::ServeError>>>,
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
        let mut rotators = Vec::new();
        let mut stores = Vec::new();
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
            stores.push(store);
        }
        let jwt_bundles = Arc::new(Watch::new());
        jwt_bundles.publish(std::iter::once(ca.spiffe_bundle()).collect::<JwtBundles>());
        let issuer = Arc::new(ShortLived {
            ca: Arc::clone(&ca),
            ttl: jwt_ttl,
            minted: AtomicUsize::new(0),
        });
        let mut served = Self {
            ca,
            jwt_bundles,
            issuer,
            _rotators: rotators,
            bundles,
            stores,
            path: socket_path(),
            stop: None,
            task: None,
        };
        served.serve().await;
        served
    }

    /// Serves the stores and the JWT methods on the socket.
    async fn serve(&mut self) {
        let mut api = WorkloadApiServer::new(self.bundles.clone());
        for store in &self.stores {
            api = api.with_svid(Arc::clone(store));
        }
        let api = api.with_jwt(self.issuer.clone(), self.jwt_bundles.clone());
        let (stop, task) = serve_joined(api, &self.path).await;
        self.stop = Some(stop);
        self.task = Some(task);
    }

    /// Stops the server and waits until it is gone.
    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&format!("unix://{}", self.path.display())).unwrap()
    }

    async fn client(&self) -> WorkloadApiClient {
        WorkloadApiClient::connect(&self.endpoint()).await.unwrap()
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
    serve_joined(api, path).await.0
}

/// Serves `api` on `path` until the sender is used (or dropped); the server's task.
async fn serve_joined(
    api: WorkloadApiServer,
    path: &Path,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), meshid::serve::ServeError>>,
) {
    let (stop, stopped) = oneshot::channel();
    let owned = PathBuf::from(path);
    let task = tokio::spawn(api.serve(owned, async {
        let _ = stopped.await;
    }));
    for _ in 0..200 {
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (stop, task)
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

fn source_options() -> JwtSourceOptions {
    JwtSourceOptions::default().backoff(Duration::from_millis(50), Duration::from_millis(400))
}

/// Waits (at most 10 s) for the source's generation to move past `seen`.
async fn next_change(source: &JwtSource, seen: u64, what: &str) -> u64 {
    tokio::time::timeout(Duration::from_secs(10), source.changes().changed(seen))
        .await
        .unwrap_or_else(|_| panic!("{what}: no change within 10 s: {:?}", source.status()))
}

fn kids(source: &JwtSource, td: &TrustDomain) -> Vec<String> {
    source
        .jwt_authorities_of(td)
        .unwrap()
        .iter()
        .map(|a| a.key_id().to_owned())
        .collect()
}

/// An authority of example.org (another X.509 root) signing with `key`.
fn signer(key: &JwtKey) -> Authority {
    Authority::new_root(
        TrustDomain::new("example.org").unwrap(),
        HOUR,
        KeyType::P256,
    )
    .unwrap()
    .with_jwt_key(key.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_source_holds_the_bundles_and_follows_keys_added_and_retired() {
    let served = Served::start(&["spiffe://example.org/web"], HOUR / 12).await;
    let source = JwtSource::new(served.endpoint(), source_options())
        .await
        .unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let first = served.ca.spiffe_bundle();
    assert_eq!(
        source.jwt_authorities_of(&td).unwrap(),
        first.jwt_authorities()
    );
    assert!(source
        .jwt_authorities_of(&TrustDomain::new("other.org").unwrap())
        .is_none());
    let status = source.status();
    assert!(status.connected && !status.stopped, "{status:?}");
    assert_eq!((status.updates, status.trust_domains), (1, 1));

    // A key added on the server reaches the source; a token it signs validates there.
    let added = JwtKey::generate(KeyType::P256).unwrap();
    let seen = source.generation();
    served.jwt_bundles.publish(
        std::iter::once(first.clone().with_jwt_authority(added.authority().clone()))
            .collect::<JwtBundles>(),
    );
    next_change(&source, seen, "a key added").await;
    let now = kids(&source, &td);
    assert_eq!(now.len(), 2);
    assert!(now.iter().any(|k| k == added.key_id()));
    assert_eq!(source.status().updates, 2);
    let web = id("spiffe://example.org/web");
    let by_added = signer(&added)
        .mint_jwt_svid(&web, &["a"], Duration::from_secs(60))
        .unwrap();
    assert_eq!(source.validate(by_added.token(), "a").unwrap().id(), &web);
    // The source is a JwtBundleSource: any validator takes it.
    let validator = JwtValidator::new("a", meshid::ring_algorithms());
    validator
        .validate(by_added.token(), &source, SystemTime::now())
        .unwrap();

    // The first key retired: its tokens are refused from then on.
    let by_first =
        Authority::mint_jwt_svid(&served.ca, &web, &["a"], Duration::from_secs(60)).unwrap();
    assert!(source.validate(by_first.token(), "a").is_ok());
    let seen = source.generation();
    served.jwt_bundles.publish(
        std::iter::once(
            meshid::SpiffeBundle::new(td.clone()).with_jwt_authority(added.authority().clone()),
        )
        .collect::<JwtBundles>(),
    );
    next_change(&source, seen, "a key retired").await;
    assert_eq!(kids(&source, &td), [added.key_id()]);
    assert!(matches!(
        source.validate(by_first.token(), "a"),
        Err(JwtError::UnknownKeyId { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_source_reuses_a_token_until_half_its_lifetime_then_fetches_anew() {
    let served = Served::start(&["spiffe://example.org/web"], Duration::from_secs(4)).await;
    let source = JwtSource::new(served.endpoint(), source_options())
        .await
        .unwrap();
    let web = id("spiffe://example.org/web");
    let first = source
        .fetch_jwt_svid(&aud(&["a", "b"]), None)
        .await
        .unwrap();
    assert_eq!(first.id(), &web);
    assert_eq!(first.audience(), ["a", "b"]);
    let again = source
        .fetch_jwt_svid(&aud(&["b", "a", "a"]), None)
        .await
        .unwrap();
    assert_eq!(first.token(), again.token(), "same audience set: reused");
    let status = source.status();
    assert_eq!((status.svids_fetched, status.svid_cache_hits), (1, 1));
    assert_eq!(served.issuer.minted.load(Ordering::SeqCst), 1);

    // Asking by ID is another cache entry (the server's own cache answers the same).
    let by_id = source
        .fetch_jwt_svid(&aud(&["a", "b"]), Some(&web))
        .await
        .unwrap();
    assert_eq!(by_id.token(), first.token());
    assert_eq!(source.status().svids_fetched, 2);
    let other = source.fetch_jwt_svid(&aud(&["c"]), None).await.unwrap();
    assert_ne!(other.token(), first.token());
    assert_eq!(source.status().svids_fetched, 3);
    // An ID the workload does not hold: the server's refusal, nothing cached.
    let err = source
        .fetch_jwt_svid(&aud(&["a"]), Some(&id("spiffe://example.org/db")))
        .await
        .unwrap_err();
    assert_eq!(code(&err).unwrap().0, tonic::Code::PermissionDenied);
    let err = source.fetch_jwt_svid(&[], None).await.unwrap_err();
    assert_eq!(code(&err).unwrap().0, tonic::Code::InvalidArgument);

    // `iat` is whole seconds before the first fetch: half of 4 s is over 2.1 s later.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = source
        .fetch_jwt_svid(&aud(&["a", "b"]), None)
        .await
        .unwrap();
    assert_ne!(later.token(), first.token(), "past half-life: a new token");
    assert!(later.expiry() > first.expiry());
    assert_eq!(source.status().svids_fetched, 4);
    let reused = source
        .fetch_jwt_svid(&aud(&["a", "b"]), None)
        .await
        .unwrap();
    assert_eq!(reused.token(), later.token());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_source_validates_locally_and_refuses_what_breaks_a_rule() {
    let mut served = Served::start(&["spiffe://example.org/web"], HOUR / 12).await;
    let source = JwtSource::new(served.endpoint(), source_options())
        .await
        .unwrap();
    let svid = source
        .fetch_jwt_svid(&aud(&["a", "b"]), None)
        .await
        .unwrap();
    assert_eq!(
        source.validate(svid.token(), "b").unwrap().id().as_str(),
        "spiffe://example.org/web"
    );
    assert_eq!(
        source.validate(svid.token(), "c").unwrap_err(),
        JwtError::AudienceMismatch {
            expected: "c".into()
        }
    );
    let other = Authority::new_root(TrustDomain::new("other.org").unwrap(), HOUR, KeyType::P256)
        .unwrap()
        .with_jwt_key(JwtKey::generate(KeyType::P256).unwrap());
    let foreign = other
        .mint_jwt_svid(&id("spiffe://other.org/x"), &["a"], Duration::from_secs(60))
        .unwrap();
    assert!(matches!(
        source.validate(foreign.token(), "a"),
        Err(JwtError::NoBundle { .. })
    ));
    assert!(matches!(
        source.validate("x.y", "a"),
        Err(JwtError::PartCount { parts: 2 })
    ));
    // A token of our trust domain signed by a key the bundles do not hold.
    let stranger = signer(&JwtKey::generate(KeyType::P256).unwrap())
        .mint_jwt_svid(
            &id("spiffe://example.org/web"),
            &["a"],
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(matches!(
        source.validate(stranger.token(), "a"),
        Err(JwtError::UnknownKeyId { .. })
    ));
    // No round trip: with the server gone, validation goes on.
    served.shut_down().await;
    assert!(source.validate(svid.token(), "a").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_source_keeps_its_bundles_while_the_server_is_away_and_reconnects() {
    let mut served = Served::start(&["spiffe://example.org/web"], HOUR / 12).await;
    let source = JwtSource::new(served.endpoint(), source_options())
        .await
        .unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let token = source.fetch_jwt_svid(&aud(&["a"]), None).await.unwrap();

    served.shut_down().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while source.status().connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loss was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!source.status().stopped);
    assert_eq!(
        kids(&source, &td).len(),
        1,
        "the last good bundles are kept"
    );
    assert!(source.validate(token.token(), "a").is_ok());
    // A cached token is still handed out; a new one cannot be fetched.
    let cached = source.fetch_jwt_svid(&aud(&["a"]), None).await.unwrap();
    assert_eq!(cached.token(), token.token());
    assert!(source.fetch_jwt_svid(&aud(&["z"]), None).await.is_err());

    // Back, with a key added while it was away: the source reconnects and follows.
    let added = JwtKey::generate(KeyType::P256).unwrap();
    served.jwt_bundles.publish(
        std::iter::once(
            served
                .ca
                .spiffe_bundle()
                .with_jwt_authority(added.authority().clone()),
        )
        .collect::<JwtBundles>(),
    );
    let seen = source.generation();
    let restarted = tokio::time::Instant::now();
    served.serve().await;
    next_change(&source, seen, "reconnected after the restart").await;
    eprintln!("recovered {:?} after the restart", restarted.elapsed());
    assert!(kids(&source, &td).iter().any(|k| k == added.key_id()));
    let status = source.status();
    assert!(status.connected && status.reconnects >= 1, "{status:?}");
    // New bundles: the cached token is not reused (fetched again; the same claims signed
    // by the same key within the same second may well be the same token: ECDSA signatures
    // are deterministic, RFC 6979); fetching works again.
    let before = source.status();
    source.fetch_jwt_svid(&aud(&["a"]), None).await.unwrap();
    let after = source.status();
    assert_eq!(after.svids_fetched, before.svids_fetched + 1);
    assert_eq!(after.svid_cache_hits, before.svid_cache_hits);
    assert!(source.fetch_jwt_svid(&aud(&["z"]), None).await.is_ok());
    source.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_source_stops_for_good_on_a_server_without_jwt() {
    let td = TrustDomain::new("example.org").unwrap();
    let ca = Authority::new_root(td.clone(), HOUR, KeyType::P256).unwrap();
    let bundles: BundleSet = [X509Bundle::from_authorities(td, ca.root().cloned()).unwrap()]
        .into_iter()
        .collect();
    let path = socket_path();
    let _stop = serve(WorkloadApiServer::new(bundles), &path).await;
    let endpoint = Endpoint::parse(&format!("unix://{}", path.display())).unwrap();
    let err = JwtSource::new(endpoint, source_options())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WorkloadApiError::Stopped { reason } if reason.contains("X509-SVIDs only")),
        "{err}"
    );
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
