//! Finding a run's weights (`locate`, `Missing::get`): the order of the places, a named file that does
//! not exist, offline mode with and without the built-in fallback, and an unreachable server. The
//! library takes every environment value as an option and reports progress as events.

use std::path::PathBuf;
use std::time::Duration;

use impasto_weights::{
    Arch, Error, Event, Fallback, Located, Origin, Resolved, WeightsOptions, cache_file_name, locate,
};

fn options(cache: &std::path::Path) -> WeightsOptions {
    WeightsOptions { cache_dir: Some(cache.to_path_buf()), ..WeightsOptions::default() }
}

#[test]
fn lookup_order() {
    let dir = tempfile::tempdir().unwrap();
    let cached = dir.path().join(cache_file_name(Arch::Vgg16));
    assert_eq!(cached.file_name().unwrap(), "vgg16-conv-imagenet.safetensors");
    let o = options(dir.path());
    assert!(matches!(locate(Arch::Vgg16, &o).unwrap(), Located::Missing(m) if m.cache_dir == dir.path()));
    std::fs::write(&cached, b"x").unwrap();
    assert_eq!(locate(Arch::Vgg16, &o).unwrap(), Located::File(cached.clone()));
    let other = dir.path().join("other.pth");
    std::fs::write(&other, b"x").unwrap();
    let env = WeightsOptions { env: Some(other.clone()), ..o.clone() };
    assert_eq!(locate(Arch::Vgg16, &env).unwrap(), Located::File(other.clone()));
    let explicit = WeightsOptions { explicit: Some(cached.clone()), ..env.clone() };
    assert_eq!(locate(Arch::Vgg16, &explicit).unwrap(), Located::File(cached));
    let typo = WeightsOptions { env: Some(dir.path().join("nope.pth")), ..o };
    match locate(Arch::Vgg19, &typo).unwrap_err() {
        e @ Error::WeightsFileMissing { origin: Origin::Environment, .. } => {
            let want = format!(
                "no vgg19 weights: the weights file the environment names, {} does not exist",
                dir.path().join("nope.pth").display()
            );
            assert_eq!(e.to_string(), want);
        }
        e => panic!("{e:?}"),
    }
    let nowhere = locate(Arch::Vgg16, &WeightsOptions::default()).unwrap_err();
    assert_eq!(nowhere.to_string(), "no vgg16 weights found and no cache folder to download them into");
}

fn missing(o: &WeightsOptions, arch: Arch) -> impasto_weights::Missing {
    match locate(arch, o).unwrap() {
        Located::Missing(m) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn offline_falls_back_only_to_a_vgg16_the_caller_has() {
    let dir = tempfile::tempdir().unwrap();
    let offline = WeightsOptions { offline: Some("--offline".into()), ..options(dir.path()) };
    let mut events = 0;
    let err = missing(&offline, Arch::Vgg16).get(&mut |_| events += 1).unwrap_err();
    let cached = dir.path().join("vgg16-conv-imagenet.safetensors");
    assert_eq!(
        err.to_string(),
        format!(
            "no vgg16 weights found (none named, {} does not exist) and offline mode (--offline) forbids \
             downloading them",
            cached.display()
        )
    );
    let with_builtin = WeightsOptions { builtin_fallback: true, ..offline };
    match missing(&with_builtin, Arch::Vgg16).get(&mut |_| events += 1).unwrap() {
        Resolved::Builtin { reason } => {
            assert!(matches!(reason, Fallback::Offline { .. }));
            assert_eq!(reason.to_string(), "offline mode (--offline) and no vgg16 weights found");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(missing(&with_builtin, Arch::Vgg19).get(&mut |_| {}), Err(Error::Offline { .. })));
    assert_eq!(events, 0, "nothing is downloaded offline");
}

#[test]
fn an_unreachable_server_falls_back_or_says_what_failed() {
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let o = WeightsOptions {
        model_url: Some(format!("http://127.0.0.1:{port}/")),
        timeout: Duration::from_secs(5),
        ..options(dir.path())
    };
    let mut seen: Vec<String> = Vec::new();
    let err = missing(&o, Arch::Vgg16).get(&mut |e| seen.push(format!("{e:?}"))).unwrap_err();
    assert!(
        matches!(&err, Error::Download { arch: Arch::Vgg16, error } if matches!(**error, Error::Network { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("cannot get the vgg16 weights: downloading http://127.0.0.1:"),
        "{err}"
    );
    assert!(seen[0].starts_with("Missing"), "{seen:?}");
    assert!(seen.iter().any(|e| e.starts_with("Downloading")), "{seen:?}");
    let fallback = WeightsOptions { builtin_fallback: true, ..o };
    match missing(&fallback, Arch::Vgg16).get(&mut |_: Event<'_>| {}).unwrap() {
        Resolved::Builtin { reason: Fallback::Unreachable { arch: Arch::Vgg16, .. } } => {}
        other => panic!("{other:?}"),
    }
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path().join("downloads"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pth"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
