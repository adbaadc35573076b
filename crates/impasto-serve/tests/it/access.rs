//! Who may use the server: only requests addressed to this machine (DNS rebinding), no state change
//! from another site, the access token (URL, then cookie) when required, the security headers on every
//! answer, and job ids nobody can guess. Raw HTTP, so that every header is the test's choice.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use impasto_serve::Limits;
use serde_json::json;

use crate::common::{TestServer, json, png, random_net, submit};

/// An answer: status, headers (names in lower case) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `method path` with `headers` (a `Host` naming the server unless given) and an empty body.
fn request(server: &TestServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut s = TcpStream::connect(server.addr).expect("the server accepts");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        text.push_str(&format!("Host: {}\r\n", server.addr));
    }
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str("\r\n");
    s.write_all(text.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("an answer");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

fn error(a: &Answer) -> String {
    // A `Connection: close` answer may be chunked: the JSON is the one line that starts with `{`.
    let line = a.body.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON: {}", a.body));
    serde_json::from_str::<serde_json::Value>(line).unwrap()["error"].as_str().unwrap().to_owned()
}

#[test]
fn only_requests_addressed_to_this_machine_are_served() {
    let server = TestServer::start(random_net(), Limits::default());
    let port = server.addr.port();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")] {
        assert_eq!(request(&server, "GET", "/", &[("Host", &host)]).status, 200, "{host}");
    }
    // A page of evil.example.com whose name now resolves to 127.0.0.1 (DNS rebinding).
    for host in ["evil.example.com", &format!("evil.example.com:{port}"), &format!("192.0.2.1:{port}")] {
        let a = request(&server, "GET", "/api/limits", &[("Host", host)]);
        assert_eq!(a.status, 403, "{host}");
        assert!(error(&a).starts_with("refused: this server answers requests for localhost"), "{}", a.body);
    }
}

#[test]
fn another_site_cannot_change_anything() {
    let server = TestServer::start(random_net(), Limits::default());
    let long = json!({"size": 32, "iterations": 2000});
    let job = json(&submit(&server, &png(40, 30, 1), &[&png(32, 32, 2)], &long));
    let id = job["id"].as_str().unwrap();
    let cancel = format!("/api/jobs/{id}/cancel");
    for headers in [
        &[("Origin", "http://evil.example.com")][..],
        &[("Origin", "null")],
        &[("Origin", &format!("http://localhost:{}", server.addr.port() + 1))],
        &[("Sec-Fetch-Site", "cross-site")],
    ] {
        let a = request(&server, "POST", &cancel, headers);
        assert_eq!(a.status, 403, "{headers:?}");
        assert_eq!(error(&a), "refused: a request from another site cannot change anything here");
    }
    let snap = json(&crate::common::get(&server.url(&format!("/api/jobs/{id}"))));
    assert!(!matches!(snap["state"].as_str(), Some("cancelled")), "{snap}");
    // The page's own requests get through.
    let origin = format!("http://{}", server.addr);
    let a = request(&server, "POST", &cancel, &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")]);
    assert_eq!(a.status, 200, "{}", a.body);
}

#[test]
fn a_required_token_comes_in_the_url_then_in_a_cookie() {
    let server = TestServer::start_with_token(random_net(), Limits::default());
    let token = server.token.clone().expect("a token");
    assert_eq!(token.len(), 32);
    for path in ["/", "/page.js", "/api/limits", "/api/jobs/x", &format!("/?token={}", &token[1..])] {
        let a = request(&server, "GET", path, &[]);
        assert_eq!(a.status, 401, "{path}");
        assert!(error(&a).starts_with("this server needs its access token"), "{}", a.body);
    }
    // The printed URL: the token goes into a cookie and leaves the address bar.
    let a = request(&server, "GET", &format!("/?token={token}"), &[]);
    assert_eq!((a.status, a.header("location")), (303, Some("/")));
    let cookie = a.header("set-cookie").expect("a cookie").to_owned();
    let name = format!("impasto-token-{}", server.addr.port());
    assert_eq!(cookie, format!("{name}={token}; Path=/; HttpOnly; SameSite=Strict"));
    let with_cookie = format!("{name}={token}");
    assert_eq!(request(&server, "GET", "/", &[("Cookie", &with_cookie)]).status, 200);
    assert_eq!(request(&server, "GET", "/api/limits", &[("Cookie", &with_cookie)]).status, 200);
    let header = format!("token {token}");
    assert_eq!(request(&server, "GET", "/api/limits", &[("Authorization", &header)]).status, 200);
    // Another server's cookie is not this one's.
    let other = format!("impasto-token-1={token}");
    assert_eq!(request(&server, "GET", "/api/limits", &[("Cookie", &other)]).status, 401);
}

#[test]
fn every_answer_carries_the_security_headers_and_the_page_has_no_inline_code() {
    let server = TestServer::start(random_net(), Limits::default());
    for (path, status) in
        [("/", 200), ("/page.js", 200), ("/page.css", 200), ("/api/limits", 200), ("/nope", 404)]
    {
        let a = request(&server, "GET", path, &[]);
        assert_eq!(a.status, status, "{path}");
        let csp = a.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        for part in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]
        {
            assert!(csp.contains(part), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{path}");
    }
    let refused = request(&server, "GET", "/", &[("Host", "evil.example.com")]);
    assert_eq!(refused.header("x-content-type-options"), Some("nosniff"));
    let page = request(&server, "GET", "/", &[]).body;
    assert!(page.contains(r#"<script src="/page.js"></script>"#), "{page}");
    assert!(!page.contains("<script>") && !page.contains("<style>") && !page.contains("style=\""), "{page}");
    let js = request(&server, "GET", "/page.js", &[]);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
}

#[test]
fn job_ids_are_random() {
    let server = TestServer::start(random_net(), Limits { max_queue: 4, ..Limits::default() });
    let long = json!({"size": 32, "iterations": 2000});
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let job = json(&submit(&server, &png(40, 30, 1), &[&png(32, 32, 2)], &long));
            job["id"].as_str().unwrap().to_owned()
        })
        .collect();
    for id in &ids {
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        let cancel = request(&server, "POST", &format!("/api/jobs/{id}/cancel"), &[]);
        assert_eq!(cancel.status, 200, "{}", cancel.body);
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(request(&server, "GET", "/api/jobs/1", &[]).status, 404);
}
