//! Downloads against the loopback server of [`crate::http_server`]: a plain download, resume after
//! an interrupted transfer and from an earlier `.part`, checksum rejection, HTTP errors, a hanging
//! server, an uncreatable cache folder, and two concurrent fetches downloading once.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use impasto_weights::{Error, fetch, sha256_file};
use sha2::{Digest, Sha256};

use crate::http_server::{Reply, Seen, Server};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A deterministic body of `n` bytes and its SHA-256 hex digest.
fn body(n: usize) -> (Vec<u8>, String) {
    let b: Vec<u8> = (0..n).map(|i| (i * 31 + i / 251) as u8).collect();
    let hex = Sha256::digest(&b).iter().map(|x| format!("{x:02x}")).collect();
    (b, hex)
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    v.sort();
    v
}

fn seen(range: Option<u64>, status: u16) -> Seen {
    Seen { path: "/m/model-abc.pth".into(), range, status }
}

#[test]
fn downloads_verifies_and_reports_progress() {
    let (b, hex) = body(100_000);
    let server = Server::start(b.clone(), vec![Reply::Full]);
    let dir = tempfile::tempdir().unwrap();
    let mut calls = Vec::new();
    let got = fetch(
        &server.url("m/model-abc.pth"),
        dir.path(),
        "model-abc.pth",
        Some(&hex[..8]),
        &mut |done, total| calls.push((done, total)),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(got, dir.path().join("model-abc.pth"));
    assert_eq!(std::fs::read(&got).unwrap(), b);
    assert_eq!(sha256_file(&got).unwrap(), hex);
    assert_eq!(calls.first(), Some(&(0, Some(100_000))));
    assert_eq!(calls.last(), Some(&(100_000, Some(100_000))));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(server.seen(), [seen(None, 200)]);
    assert_eq!(leftovers(dir.path()), ["model-abc.pth"]);

    // Already there: no request at all (the server has no reply left to give).
    let again =
        fetch(&server.url("m/model-abc.pth"), dir.path(), "model-abc.pth", None, &mut |_, _| {}, TIMEOUT);
    assert_eq!(again.unwrap(), got);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn interrupted_transfer_is_resumed_with_range() {
    let (b, hex) = body(80_000);
    let server = Server::start(b.clone(), vec![Reply::Cut(40_000), Reply::Full]);
    let dir = tempfile::tempdir().unwrap();
    let got = fetch(
        &server.url("m/model-abc.pth"),
        dir.path(),
        "model-abc.pth",
        Some(&hex[..8]),
        &mut |_, _| {},
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), b);
    assert_eq!(server.seen(), [seen(None, 200), seen(Some(40_000), 206)]);
    assert_eq!(leftovers(dir.path()), ["model-abc.pth"]);
}

#[test]
fn transfer_broken_every_time_keeps_the_part_for_a_later_run() {
    let (b, hex) = body(90_000);
    let dir = tempfile::tempdir().unwrap();
    {
        let server = Server::start(b.clone(), vec![Reply::Cut(10_000); 3]);
        let r =
            fetch(&server.url("m/model-abc.pth"), dir.path(), "model-abc.pth", None, &mut |_, _| {}, TIMEOUT);
        assert!(matches!(r, Err(Error::Network { .. })), "{r:?}");
        assert_eq!(server.seen(), [seen(None, 200), seen(Some(10_000), 206), seen(Some(20_000), 206)]);
        assert_eq!(leftovers(dir.path()), ["model-abc.pth.part"]);
    }
    // A later run (a new process, say) picks up at 30 000 bytes.
    let server = Server::start(b.clone(), vec![Reply::Full]);
    let got = fetch(
        &server.url("m/model-abc.pth"),
        dir.path(),
        "model-abc.pth",
        Some(&hex[..8]),
        &mut |_, _| {},
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), b);
    assert_eq!(server.seen(), [seen(Some(30_000), 206)]);
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let (b, hex) = body(50_000);
    let dir = tempfile::tempdir().unwrap();
    // A stale .part whose bytes are wrong: the 200 must replace it, not be appended to it.
    std::fs::write(dir.path().join("model-abc.pth.part"), vec![0xAA; 20_000]).unwrap();
    let server = Server::start(b.clone(), vec![Reply::IgnoreRange]);
    let got = fetch(
        &server.url("m/model-abc.pth"),
        dir.path(),
        "model-abc.pth",
        Some(&hex[..8]),
        &mut |_, _| {},
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), b);
    assert_eq!(server.seen(), [seen(Some(20_000), 200)]);
}

#[test]
fn checksum_mismatch_caches_nothing() {
    let (b, hex) = body(30_000);
    let wrong = if hex.starts_with('0') { "10000000" } else { "00000000" };
    let server = Server::start(b, vec![Reply::Full]);
    let dir = tempfile::tempdir().unwrap();
    let err = fetch(
        &server.url("m/model-abc.pth"),
        dir.path(),
        "model-abc.pth",
        Some(wrong),
        &mut |_, _| {},
        TIMEOUT,
    )
    .unwrap_err();
    match &err {
        Error::Checksum { expected, actual, .. } => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, &hex);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("nothing was cached"), "{err}");
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
}

#[test]
fn http_errors_name_the_status() {
    for code in [404u16, 500] {
        let server = Server::start(Vec::new(), vec![Reply::Status(code)]);
        let dir = tempfile::tempdir().unwrap();
        let url = server.url("m/model-abc.pth");
        let err = fetch(&url, dir.path(), "model-abc.pth", None, &mut |_, _| {}, TIMEOUT).unwrap_err();
        assert!(matches!(&err, Error::HttpStatus { status, .. } if *status == code), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&code.to_string()) && msg.contains(&url), "{msg}");
        assert!(leftovers(dir.path()).is_empty());
    }
}

#[test]
fn hanging_server_times_out() {
    let server = Server::start(Vec::new(), vec![Reply::Hang(Duration::from_secs(10))]);
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let err = fetch(
        &server.url("m/model-abc.pth"),
        dir.path(),
        "model-abc.pth",
        None,
        &mut |_, _| {},
        Duration::from_millis(1000),
    )
    .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn connection_refused_is_a_network_error() {
    // Bind then drop a listener: its port is (almost certainly) closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/x.pth");
    let err = fetch(&url, dir.path(), "x.pth", None, &mut |_, _| {}, TIMEOUT).unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
}

#[test]
fn uncreatable_cache_folder_is_an_error() {
    // Root ignores permission bits, so make the folder impossible instead: its parent is a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let server = Server::start(vec![1, 2, 3], vec![Reply::Full]);
    for dest in [file.join("cache"), file.clone()] {
        let err = fetch(&server.url("m/x.pth"), &dest, "x.pth", None, &mut |_, _| {}, TIMEOUT).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains(&dest.display().to_string()), "{err}");
    }
    assert!(server.seen().is_empty());
}

#[test]
fn bad_file_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", "../x.pth", "a/b.pth", ".hidden"] {
        let r = fetch("http://127.0.0.1:9/x", dir.path(), name, None, &mut |_, _| {}, TIMEOUT);
        assert!(matches!(r, Err(Error::Io { .. })), "{name}: {r:?}");
    }
}

#[test]
fn concurrent_fetches_download_once() {
    let (b, hex) = body(200_000);
    // A second reply is allowed, so a broken lock would show up as a second request.
    let server = Server::start(b.clone(), vec![Reply::FullAfter(Duration::from_millis(300)), Reply::Full]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("m/model-abc.pth");
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (url, dir, hex, barrier) =
                (url.clone(), dir.path().to_path_buf(), hex.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                fetch(&url, &dir, "model-abc.pth", Some(&hex[..8]), &mut |_, _| {}, TIMEOUT)
            })
        })
        .collect();
    for h in handles {
        let p = h.join().unwrap().unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b);
    }
    assert_eq!(server.seen(), [seen(None, 200)]);
    assert_eq!(leftovers(dir.path()), ["model-abc.pth"]);
}
