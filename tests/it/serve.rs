//! `impasto serve`: starts on a free loopback port, prints its URL, serves the page and its limits from
//! the flags, stops cleanly on Ctrl-C (SIGINT), SIGTERM and SIGHUP; bad flags, missing weights and a taken port are one-line
//! errors. (The server itself is tested in crates/impasto-serve.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{Run, Sandbox, run_weights, signal};

/// A GET over a plain socket: the whole answer, headers included.
fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("the server accepts");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("an answer");
    answer
}

/// The first stdout line of a child, within 60 s.
fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("impasto serve printed its URL")
}

/// Starts `impasto serve ARGS` in `sb`; returns the child and the `host:port` of the URL it printed.
fn start(sb: &Sandbox, args: &[&str]) -> (Child, String) {
    let mut child = sb
        .cmd()
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("impasto serve starts");
    let line = first_line(&mut child);
    let addr = line
        .strip_prefix("impasto serve: open http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (child, addr)
}

/// Ctrl-C to the server: it must stop cleanly with status 0.
fn interrupt(child: Child) -> Run {
    stop_with(child, "INT")
}

/// `kill -NAME` to the server: it must stop cleanly with status 0.
fn stop_with(child: Child, name: &str) -> Run {
    signal(&child, name);
    let out: Run = child.wait_with_output().expect("impasto serve ends").into();
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    out
}

#[test]
fn serve_prints_its_url_serves_the_page_and_stops_on_ctrl_c() {
    let w = run_weights();
    let sb = Sandbox::new();
    let (child, addr) = start(&sb, &["--port", "0", "--weights", &w, "--max-size", "300"]);
    assert!(addr.starts_with("127.0.0.1:"), "binds loopback by default: {addr}");

    let page = get(&addr, "/");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>impasto</title>"));
    let limits = get(&addr, "/api/limits");
    assert!(limits.contains(r#""max_size":300"#), "{limits}");
    let missing = get(&addr, "/api/jobs/1");
    assert!(missing.starts_with("HTTP/1.1 404") && missing.contains(r#"{"error":"no job 1"#), "{missing}");
    // A page of another site whose name now resolves to this machine (DNS rebinding) gets nothing.
    let mut s = TcpStream::connect(&addr).expect("the server accepts");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET /api/limits HTTP/1.1\r\nHost: evil.example.com\r\nConnection: close\r\n\r\n").unwrap();
    let mut rebound = String::new();
    s.read_to_string(&mut rebound).expect("an answer");
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");

    // Ctrl-C: a clean stop with status 0.
    let out = interrupt(child);
    assert_eq!(out.stderr.trim(), "impasto serve: stopped");
}

/// A Ctrl-C the instant the URL is out (the handler must be in place before it is printed): a clean stop
/// with status 0, every time. It used to kill the server now and then.
#[cfg(unix)]
#[test]
fn ctrl_c_right_after_the_url_stops_cleanly_every_time() {
    let sb = Sandbox::new();
    for round in 0..20 {
        let mut child = sb
            .cmd()
            .args(["serve", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("impasto serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("impasto serve prints its URL");
        signal(&child, "INT");
        assert!(line.starts_with("impasto serve: open http://127.0.0.1:"), "round {round}: {line}");
        let out: Run = child.wait_with_output().expect("impasto serve ends").into();
        assert_eq!(out.code, Some(0), "round {round}: killed by the signal? stderr: {}", out.stderr);
        assert!(out.stderr.trim_end().ends_with("impasto serve: stopped"), "round {round}: {}", out.stderr);
    }
}

/// SIGTERM (how Kubernetes, systemd and `kill` stop a server) and SIGHUP stop it as Ctrl-C does.
#[cfg(unix)]
#[test]
fn sigterm_and_sighup_stop_the_server_cleanly() {
    let sb = Sandbox::new();
    for name in ["TERM", "HUP"] {
        let (child, addr) = start(&sb, &["--port", "0"]);
        assert!(get(&addr, "/api/limits").starts_with("HTTP/1.1 200"), "SIG{name}");
        let out = stop_with(child, name);
        assert!(out.stderr.trim_end().ends_with("impasto serve: stopped"), "SIG{name}: {}", out.stderr);
    }
}

#[test]
fn serve_offline_without_weights_uses_the_built_in_model() {
    let sb = Sandbox::new();
    let (child, addr) = start(&sb, &["--port", "0"]);
    assert!(get(&addr, "/api/limits").starts_with("HTTP/1.1 200"));
    let out = interrupt(child);
    let notice = out.stderr.lines().next().unwrap_or_default();
    assert!(
        notice.contains("no vgg16 weights found: using the built-in compact VGG-16")
            && notice.contains("style layers relu1_1,relu2_1,relu3_1,relu4_1"),
        "{}",
        out.stderr
    );
}

/// `--token`, and any address beyond loopback: the URL carries a random token, and nothing is served
/// without it.
#[test]
fn serve_requires_the_token_of_its_url_with_token_or_beyond_loopback() {
    let sb = Sandbox::new();
    for args in [&["--port", "0", "--token"][..], &["--port", "0", "--host", "0.0.0.0"]] {
        let mut child = sb
            .cmd()
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("impasto serve starts");
        let line = first_line(&mut child);
        let url = line.trim().strip_prefix("impasto serve: open http://").unwrap_or_else(|| panic!("{line}"));
        let (addr, token) = url.split_once("/?token=").unwrap_or_else(|| panic!("no token in {line}"));
        let token = token.split(' ').next().unwrap();
        assert!(addr.starts_with("127.0.0.1:") && token.len() == 32, "{line}");
        assert!(get(addr, "/api/limits").starts_with("HTTP/1.1 401"), "{args:?}");
        let opened = get(addr, &format!("/?token={token}"));
        assert!(
            opened.starts_with("HTTP/1.1 303") && opened.contains("HttpOnly; SameSite=Strict"),
            "{opened}"
        );
        let out = interrupt(child);
        let warned = out.stderr.contains("warning: listening on 0.0.0.0:");
        assert_eq!(warned, args.contains(&"0.0.0.0"), "{}", out.stderr);
    }
}

#[test]
fn serve_reports_bad_flags_missing_weights_an_unusable_output_and_a_taken_port_in_one_line() {
    let sb = Sandbox::new();
    let e = sb.run(&["serve", "--max-size", "99999"]).error_line(1).to_owned();
    assert_eq!(e, "impasto: error: invalid --max-size 99999: it must be between 16 and 16384 pixels");
    // The run's rule, checked before the server starts rather than by each job.
    let e = sb.run(&["serve", "--port", "0", "--threads", "99999"]).error_line(1).to_owned();
    assert_eq!(e, "impasto: error: invalid threads: 99999 (must be at most 1024; 0 = one per core)");
    // Offline with an empty cache: VGG-19's weights are nowhere (there is no built-in VGG-19).
    let out = sb.run(&["serve", "--port", "0", "--model", "vgg19"]);
    let e = out.error_line(1);
    assert!(e.starts_with("impasto: error: no vgg19 weights found") && e.contains("offline"), "{e}");
    let e = sb.run(&["serve", "--model", "vgg19", "--weights", "builtin"]).error_line(1).to_owned();
    assert_eq!(e, "impasto: error: --weights builtin is a VGG-16; it cannot serve --model vgg19");
    std::fs::write(sb.path("afile"), b"").unwrap();
    let e = sb.run(&["serve", "--port", "0", "-o", "afile/results"]).error_line(1).to_owned();
    assert!(e.starts_with("impasto: error: results folder afile/results cannot be made: "), "{e}");
    let out = sb.run(&["serve", "--host", "not-an-address"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("invalid value 'not-an-address' for '--host <ADDR>'"), "{}", out.stderr);

    let w = run_weights();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = sb.run(&["serve", "--port", &port, "--weights", &w]);
    let e = out.error_line(1).replace(&port, "[PORT]");
    // The OS reason once: the error formats it and does not also return it as its source.
    insta::assert_snapshot!(e, @"impasto: error: impasto serve: cannot listen on 127.0.0.1:[PORT]: Address already in use (os error 98)");
}
