//! HTTP-level tests of the limits and of bad requests: every rejection is a 4xx with a JSON message a
//! person can read, and no request — garbage multipart, wrong content types, unknown jobs, huge sizes,
//! non-image bytes, random bytes, broken HTTP — takes the server down.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use impasto_serve::Limits;
use serde_json::json;

use crate::common::{TestServer, error_of, get, json, multipart, png, post, post_json, random_net, submit};

fn small_limits() -> Limits {
    Limits {
        max_upload_bytes: 64 << 10,
        max_pixels: 10_000,
        max_size: 128,
        max_iterations: 50,
        ..Limits::default()
    }
}

#[test]
fn the_page_and_the_limits_are_served() {
    let server = TestServer::start(random_net(), small_limits());
    let (status, body) = get(&server.url("/"));
    let page = String::from_utf8(body).unwrap();
    assert_eq!(status, 200);
    for id in ["content-file", "style-file", "style-weight", "start", "pause", "cancel", "download", "plot"] {
        assert!(page.contains(&format!("id=\"{id}\"")), "the page has no #{id}");
    }
    let limits = json(&get(&server.url("/api/limits")));
    assert_eq!(limits["limits"]["max_upload_bytes"], 64 << 10);
    assert_eq!(limits["limits"]["max_size"], 128);
    assert!(limits["text"].as_str().unwrap().contains("uploads up to 64 KiB"), "{limits}");
    assert_eq!(limits["defaults"]["style_weight"], 100.0);
}

#[test]
fn limits_are_enforced_with_clear_messages() {
    let server = TestServer::start(random_net(), small_limits());
    let (small, style) = (png(40, 30, 1), png(32, 32, 2));
    let ok = json!({"size": 32, "iterations": 5});

    // Over the pixel limit: 200×100 = 20,000 pixels > 10,000, refused from the header.
    let big = png(200, 100, 3);
    let e = error_of(&submit(&server, &big, &[&style], &ok), 413);
    assert_eq!(e, "content.png is 200×100 (20000 pixels), over this server's limit of 10000 pixels");

    // Over the upload limit (64 KiB), whatever the images.
    let noise: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let e = error_of(&submit(&server, &noise, &[&style], &ok), 413);
    assert!(e.contains("larger than the limit of 64 KiB"), "{e}");

    // Settings beyond the limits.
    let e = error_of(&submit(&server, &small, &[&style], &json!({"size": 100000})), 400);
    assert_eq!(e, "size 100000 is over this server's limit of 128 pixels");
    let e = error_of(&submit(&server, &small, &[&style], &json!({"size": 32, "iterations": 1000000})), 400);
    assert!(e.contains("1 to 50"), "{e}");
    let nine: Vec<&[u8]> = vec![&style; 9];
    let e = error_of(&submit(&server, &small, &nine, &ok), 400);
    assert!(e.contains("at most 8"), "{e}");
    let e = error_of(&submit(&server, &small, &[&style], &json!({"size": 32, "style_weight": -1})), 400);
    assert!(e.contains("style weight -1"), "{e}");
    let e = error_of(&submit(&server, &small, &[&style], &json!({"size": 4})), 400);
    assert!(e.contains("at least 16"), "{e}");

    // The queue limit: one running, `max_queue` waiting, then refusals.
    let server = TestServer::start(random_net(), Limits { max_queue: 1, ..Limits::default() });
    let long = json!({"size": 32, "iterations": 2000});
    let a = json(&submit(&server, &small, &[&style], &long));
    let b = json(&submit(&server, &small, &[&style], &long));
    assert_eq!(b["queue_position"], 1, "{b}");
    let e = error_of(&submit(&server, &small, &[&style], &long), 503);
    assert!(e.starts_with("the queue is full (1 runs waiting)"), "{e}");
    for j in [&b, &a] {
        post(&server.url(&format!("/api/jobs/{}/cancel", j["id"].as_str().unwrap())), "text/plain", b"");
    }
}

#[test]
fn bad_requests_get_json_errors_and_never_a_panic() {
    let server = TestServer::start(random_net(), small_limits());
    let jobs = server.url("/api/jobs");
    let (content, style) = (png(40, 30, 1), png(32, 32, 2));
    let settings = br#"{"size": 32, "iterations": 3}"#;

    // Not multipart at all.
    let e = error_of(&post(&jobs, "text/plain", b"hello"), 415);
    assert!(e.starts_with("expected a multipart/form-data upload"), "{e}");
    let e = error_of(&post(&jobs, "application/json", b"{}"), 415);
    assert!(e.starts_with("expected a multipart/form-data upload"), "{e}");
    // Multipart in name only, or cut short.
    error_of(&post(&jobs, "multipart/form-data; boundary=x", b"garbage\r\n\r\n"), 400);
    let (ct, body) = multipart(&[("content", Some("a.png"), &content)]);
    let e = error_of(&post(&jobs, &ct, &body[..body.len() / 2]), 400);
    assert!(e.starts_with("malformed upload"), "{e}");
    // Missing, doubled or unknown fields.
    let (ct, body) = multipart(&[("style", Some("s.png"), &style), ("settings", None, settings)]);
    assert_eq!(error_of(&post(&jobs, &ct, &body), 400), "no content image: add one");
    let (ct, body) = multipart(&[("content", Some("c.png"), &content), ("settings", None, settings)]);
    assert_eq!(error_of(&post(&jobs, &ct, &body), 400), "no style image: add at least one");
    let (ct, body) = multipart(&[("content", Some("c.png"), &content), ("content", Some("d.png"), &content)]);
    assert_eq!(error_of(&post(&jobs, &ct, &body), 400), "give one content image, not several");
    let (ct, body) = multipart(&[("extra", None, b"1")]);
    assert_eq!(error_of(&post(&jobs, &ct, &body), 400), "unexpected form field `extra`");
    // Not images, empty, truncated.
    let (ct, body) =
        multipart(&[("content", Some("notes.txt"), b"just text"), ("style", Some("s.png"), &style)]);
    let e = error_of(&post(&jobs, &ct, &body), 415);
    assert_eq!(e, "notes.txt is not an image impasto reads (PNG, JPEG, WebP, TIFF, GIF or BMP)");
    let (ct, body) = multipart(&[("content", Some("empty.png"), b""), ("style", Some("s.png"), &style)]);
    assert_eq!(error_of(&post(&jobs, &ct, &body), 400), "empty.png is empty");
    let cut = &content[..content.len() - 20];
    let (ct, body) = multipart(&[("content", Some("cut.png"), cut), ("style", Some("s.png"), &style)]);
    let e = error_of(&post(&jobs, &ct, &body), 400);
    assert!(e.starts_with("cannot decode image cut.png"), "{e}");
    // Bad settings.
    for (text, want) in [
        (&b"{"[..], "invalid settings: EOF"),
        (br#"{"size": "big"}"#, "invalid settings: invalid type"),
        (br#"{"colour": 1}"#, "invalid settings: unknown field `colour`"),
        (br#"{"size": -5}"#, "invalid settings: invalid value"),
    ] {
        let (ct, body) = multipart(&[
            ("content", Some("c.png"), &content),
            ("style", Some("s.png"), &style),
            ("settings", None, text),
        ]);
        let e = error_of(&post(&jobs, &ct, &body), 400);
        assert!(e.starts_with(want), "{e} (wanted {want})");
    }

    // Unknown jobs and routes.
    for path in [
        "/api/jobs/999",
        "/api/jobs/abc",
        "/api/jobs/1%00",
        "/api/jobs/-1/events",
        "/api/jobs/7/preview.png",
        "/api/jobs/7/result.png",
    ] {
        let e = error_of(&get(&server.url(path)), 404);
        assert!(e.starts_with("no job"), "{path}: {e}");
    }
    assert_eq!(error_of(&get(&server.url("/api/nothing")), 404), "no such page or API route");
    assert_eq!(error_of(&get(&jobs), 405), "this route does not take that method");
    for action in ["pause", "resume", "cancel"] {
        error_of(&post(&server.url(&format!("/api/jobs/42/{action}")), "text/plain", b""), 404);
    }
    let e = error_of(
        &post_json(&server.url("/api/jobs/42/weights"), &json!({"content": 1, "style": 1, "tv": 1})),
        404,
    );
    assert!(e.starts_with("no job 42"), "{e}");

    // Weights: wrong type, bad JSON, bad values (on a real job).
    let job = json(&submit(&server, &content, &[&style], &json!({"size": 32, "iterations": 50})));
    let weights = server.url(&format!("/api/jobs/{}/weights", job["id"].as_str().unwrap()));
    error_of(&post(&weights, "text/plain", b"{}"), 415);
    error_of(&post(&weights, "application/json", b"{not json"), 400);
    let e = error_of(&post_json(&weights, &json!({"content": 1, "style": 1})), 400);
    assert!(e.contains("missing field `tv`"), "{e}");
    let e = error_of(&post_json(&weights, &json!({"content": -1, "style": 1, "tv": 0})), 400);
    assert_eq!(e, "content weight -1: it must be a number from 0 to 1e12");
    let e = error_of(&post_json(&weights, &json!({"content": 1, "style": 1e30, "tv": 0})), 400);
    assert!(e.starts_with("style weight 1000000000000000000000000000000"), "{e}");
    let e = error_of(&post_json(&weights, &json!({"content": 1, "style": 0, "tv": 0})), 400);
    assert_eq!(e, "the style weight must stay above 0");
    error_of(&post(&weights, "application/json", &vec![b'['; 20 << 10]), 413);
    post(&server.url(&format!("/api/jobs/{}/cancel", job["id"].as_str().unwrap())), "text/plain", b"");

    // Random bytes as multipart bodies and as images (deterministic): always a 4xx with a message.
    let mut seed = 0x2545_F491u64;
    let mut byte = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 56) as u8
    };
    for round in 0..60 {
        let len = 1 + round * 37;
        let junk: Vec<u8> = (0..len).map(|_| byte()).collect();
        let r = if round % 2 == 0 {
            post(&jobs, "multipart/form-data; boundary=impasto-test-boundary-7d3f", &junk)
        } else {
            let mut fake = content[..8.min(content.len())].to_vec(); // a PNG signature, then noise
            fake.extend_from_slice(&junk);
            let (ct, body) =
                multipart(&[("content", Some("c.png"), &fake), ("style", Some("s.png"), &style)]);
            post(&jobs, &ct, &body)
        };
        assert!((400..500).contains(&r.0), "round {round}: status {}", r.0);
        assert!(!json(&r)["error"].as_str().unwrap_or_default().is_empty(), "round {round}");
    }

    // Broken HTTP on a raw socket: the connection is refused or closed, the server lives on.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"POST /api/jobs HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"\x00\x01\x02",
    ] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(garbage).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    }
    assert!(server.alive(), "the server stopped answering");
}
