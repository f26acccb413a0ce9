//! `SvidDir`: svid.pem, svid.key and bundle.pem replaced as one set.
#![cfg(all(unix, feature = "ca"))]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use meshid::{Authority, DirError, KeyType, SpiffeId, SvidDir, TrustDomain, X509Svid};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshid-svid-dir-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ca() -> Authority {
    Authority::new_root(
        TrustDomain::new("example.org").unwrap(),
        Duration::from_secs(3600),
        KeyType::P256,
    )
    .unwrap()
}

fn web(ca: &Authority) -> X509Svid {
    ca.issue(
        &SpiffeId::new("spiffe://example.org/web").unwrap(),
        Duration::from_secs(600),
    )
    .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn readers_see_one_version_at_a_time_and_old_versions_go() {
    let base = scratch("concurrent");
    let ca = ca();
    let root = ca.root().cloned().unwrap();
    let svids: Vec<X509Svid> = (0..8).map(|_| web(&ca)).collect();
    let dir = SvidDir::new(base.join("web"));
    dir.write(&svids[0], std::slice::from_ref(&root)).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    // A reader of the public names that discards a read during which svid.pem changed.
    let naive = {
        let (done, path) = (Arc::clone(&done), dir.path().to_owned());
        std::thread::spawn(move || {
            let (mut checked, mut mismatched) = (0, 0);
            while !done.load(Ordering::Relaxed) {
                // A lookup that went through a version removed meanwhile fails: read again.
                let (Ok(pem), Ok(key), Ok(again)) = (
                    std::fs::read(path.join("svid.pem")),
                    std::fs::read(path.join("svid.key")),
                    std::fs::read(path.join("svid.pem")),
                ) else {
                    continue;
                };
                if again == pem {
                    checked += 1;
                    if X509Svid::parse_pem(&pem, &key).is_err() {
                        mismatched += 1;
                    }
                }
            }
            (checked, mismatched)
        })
    };
    // SvidDir::read: always a whole version.
    let library = {
        let (done, dir) = (Arc::clone(&done), dir.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let (svid, bundle) = dir.read().unwrap();
                assert_eq!(svid.id().as_str(), "spiffe://example.org/web");
                assert_eq!(bundle.len(), 1);
                reads += 1;
            }
            reads
        })
    };
    for i in 0..300 {
        dir.write(&svids[i % svids.len()], std::slice::from_ref(&root))
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let (checked, mismatched) = naive.join().unwrap();
    let reads = library.join().unwrap();
    assert!(checked > 0 && reads > 0, "{checked} {reads}");
    assert_eq!(mismatched, 0, "{mismatched} of {checked} reads mismatched");

    // The current version and the one before it are kept.
    let names = names(dir.path());
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(names[0], "..data");
    assert!(
        names[1].starts_with("..v") && names[2].starts_with("..v"),
        "{names:?}"
    );
    assert_eq!(
        &names[3..],
        ["bundle.pem", "svid.key", "svid.pem"].map(String::from)
    );
    for public in ["svid.pem", "svid.key", "bundle.pem"] {
        let link = std::fs::read_link(dir.path().join(public)).unwrap();
        assert_eq!(link, Path::new("..data").join(public));
    }
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&dir.path().join(&names[1])), 0o700);
    assert_eq!(mode(&dir.path().join("svid.key")), 0o600);
    assert_eq!(mode(&dir.path().join("svid.pem")), 0o644);
    let (svid, _) = dir.read().unwrap();
    assert_eq!(svid.leaf(), svids[299 % svids.len()].leaf());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn plain_files_of_an_older_meshid_are_read_and_replaced_by_links() {
    let base = scratch("legacy");
    let ca = ca();
    let root = ca.root().cloned().unwrap();
    let old = web(&ca);
    std::fs::write(base.join("svid.pem"), old.chain_pem()).unwrap();
    std::fs::write(base.join("svid.key"), old.key_pem().as_bytes()).unwrap();
    std::fs::write(base.join("bundle.pem"), "").unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = SvidDir::new(&base);
    let (svid, bundle) = dir.read().unwrap();
    assert_eq!(svid.leaf(), old.leaf());
    assert!(bundle.is_empty());

    let new = web(&ca);
    dir.write(&new, std::slice::from_ref(&root)).unwrap();
    let (svid, bundle) = dir.read().unwrap();
    assert_eq!(svid.leaf(), new.leaf());
    assert_eq!(bundle, [root]);
    assert!(std::fs::symlink_metadata(base.join("svid.key"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(base.join("svid.key")).unwrap(),
        *new.key_pem()
    );
    // An existing directory keeps its mode when no one else may write it.
    assert_eq!(mode(&base), 0o755);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_directory_others_may_write_is_refused_and_left_alone() {
    let base = scratch("open");
    let ca = ca();
    for open in [0o777, 0o1777, 0o702] {
        let path = base.join(format!("open-{open:o}"));
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
        let err = SvidDir::new(&path).write(&web(&ca), &[]).unwrap_err();
        assert!(
            matches!(err, DirError::WritableByOthers { mode, .. } if mode == open),
            "{err}"
        );
        assert!(err.to_string().contains("writable by other users"), "{err}");
        assert!(names(&path).is_empty());
    }
    std::fs::write(base.join("file"), b"").unwrap();
    assert!(SvidDir::new(base.join("file"))
        .write(&web(&ca), &[])
        .is_err());
    assert!(matches!(
        SvidDir::new(base.join("missing")).read(),
        Err(DirError::Io { .. })
    ));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_key_that_does_not_match_is_refused_on_read() {
    let base = scratch("mismatch");
    let ca = ca();
    let (a, b) = (web(&ca), web(&ca));
    std::fs::write(base.join("svid.pem"), a.chain_pem()).unwrap();
    std::fs::write(base.join("svid.key"), b.key_pem().as_bytes()).unwrap();
    std::fs::write(base.join("bundle.pem"), "").unwrap();
    assert!(matches!(
        SvidDir::new(&base).read(),
        Err(DirError::Svid { .. })
    ));
    std::fs::remove_dir_all(&base).unwrap();
}
