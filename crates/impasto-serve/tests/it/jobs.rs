//! Runs through the HTTP API (random weights, tiny images): the event stream of a multi-scale run
//! (start, steps with scale and ETA, previews, end), the queue with visible positions, pause, resume,
//! steering and cancel, and the result download at any moment; a run on the GPU.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use impasto_serve::Limits;
use serde_json::{Value, json};

use crate::common::{
    TestServer, agent, error_of, get, json, png, post, post_json, random_net, submit, wait_for,
};

fn id_of(snapshot: &Value) -> String {
    snapshot["id"].as_str().expect("a job id").to_owned()
}

fn decode_png(bytes: &[u8]) -> (u32, u32) {
    let img = impasto::image::load_from_memory_with_format(bytes, impasto::image::ImageFormat::Png)
        .expect("a PNG that decodes");
    (img.width(), img.height())
}

/// Reads the job's event stream until the job is over; returns the events.
fn events_until_over(server: &TestServer, id: &str) -> Vec<Value> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(120))).build().into();
    let response =
        agent.get(&server.url(&format!("/api/jobs/{id}/events"))).call().expect("the stream opens");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = Vec::new();
    for line in BufReader::new(response.into_body().into_reader()).lines() {
        let line = line.expect("the stream reads");
        let Some(data) = line.strip_prefix("data: ") else { continue };
        let event: Value = serde_json::from_str(data).expect("events are JSON");
        let over = event["type"] == "state"
            && matches!(event["state"].as_str(), Some("finished" | "cancelled" | "failed"));
        events.push(event);
        if over {
            return events;
        }
    }
    panic!("the stream ended before the job did: {events:?}");
}

/// `impasto serve --device gpu:N`: a run on the GPU (adapter `IMPASTO_TEST_GPU`, default 0; software
/// ones included, lavapipe in CI) streams its steps and ends with its result, as on the CPU.
#[test]
fn a_run_on_the_gpu_streams_its_steps_and_finishes() {
    assert!(!impasto::gpu_adapters().is_empty(), "no GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    let index = std::env::var("IMPASTO_TEST_GPU").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let server = TestServer::start_on(random_net(), Limits::default(), impasto::Device::Gpu(Some(index)));
    let settings = json!({"size": 32, "iterations": 4});
    let id = id_of(&json(&submit(&server, &png(40, 30, 1), &[&png(32, 32, 2)], &settings)));
    let events = events_until_over(&server, &id);
    let last = events.last().unwrap();
    assert!(last["state"] == "finished", "{events:?}");
    let steps: Vec<&Value> = events.iter().filter(|e| e["type"] == "step").collect();
    assert!(!steps.is_empty() && steps.iter().all(|s| s["total"].as_f64().is_some_and(|t| t > 0.0)));
    let (status, result) = get(&server.url(&format!("/api/jobs/{id}/result.png")));
    assert_eq!((status, decode_png(&result)), (200, (32, 24)));
}

#[test]
fn a_multiscale_run_streams_steps_scales_eta_and_previews() {
    let server = TestServer::start(random_net(), Limits::default());
    let settings = json!({"size": 48, "iterations": 12, "min_size": 24});
    let job = json(&submit(&server, &png(60, 40, 1), &[&png(32, 32, 2), &png(40, 40, 3)], &settings));
    let id = id_of(&job);
    let events = events_until_over(&server, &id);
    let of = |t: &str| events.iter().filter(|e| e["type"] == t).collect::<Vec<_>>();

    assert_eq!(of("snapshot").len(), 1, "a snapshot comes first");
    assert_eq!(events[0]["type"], "snapshot");
    let started = of("started");
    assert_eq!(started.len(), 1);
    assert_eq!(
        started[0]["scales"],
        json!([{"width": 24, "height": 16, "iterations": 12}, {"width": 48, "height": 32, "iterations": 12}])
    );
    let steps = of("step");
    let scales: Vec<u64> = steps.iter().map(|s| s["scale"].as_u64().unwrap()).collect();
    assert!(scales.contains(&0) && scales.contains(&1), "steps at both scales: {scales:?}");
    assert!(steps.iter().all(|s| s["scales"] == 2 && s["iterations"] == 24));
    assert!(steps.iter().any(|s| s["eta_s"].as_f64().is_some_and(|e| e >= 0.0)), "an ETA is given");
    assert!(steps.iter().all(|s| s["style"].as_f64().unwrap() > 0.0 && s["total"].as_f64().unwrap() > 0.0));
    assert!(!of("preview").is_empty(), "previews are announced");
    let last = events.last().unwrap();
    assert!(last["state"] == "finished", "{last}");

    // The snapshot has every step; the preview and the result are PNGs at the scale and size asked.
    let snap = json(&get(&server.url(&format!("/api/jobs/{id}"))));
    assert_eq!(snap["history"].as_array().unwrap().len(), steps.len());
    let (status, preview) = get(&server.url(&format!("/api/jobs/{id}/preview.png")));
    assert_eq!((status, decode_png(&preview)), (200, (48, 32)));
    let (status, result) = get(&server.url(&format!("/api/jobs/{id}/result.png")));
    assert_eq!((status, decode_png(&result)), (200, (48, 32)));
    // Controls on a finished job are refused politely.
    for action in ["pause", "cancel"] {
        let e = error_of(&post(&server.url(&format!("/api/jobs/{id}/{action}")), "text/plain", b""), 409);
        assert_eq!(e, "the run is over");
    }
}

#[test]
fn queue_pause_steer_resume_cancel_and_download() {
    let server = TestServer::start(random_net(), Limits::default());
    let (content, style) = (png(32, 32, 1), png(32, 32, 2));
    let long = json!({"size": 32, "iterations": 2000});
    let a = id_of(&json(&submit(&server, &content, &[&style], &long)));
    let b = json(&submit(&server, &content, &[&style], &long));
    let c = json(&submit(&server, &content, &[&style], &long));
    assert_eq!((b["state"].as_str(), b["queue_position"].as_u64()), (Some("queued"), Some(1)));
    assert_eq!(c["queue_position"], 2);
    let (b, c) = (id_of(&b), id_of(&c));
    let url = |id: &str, path: &str| server.url(&format!("/api/jobs/{id}{path}"));

    // Nothing to show or pause before a job starts.
    assert_eq!(error_of(&get(&url(&b, "/result.png")), 409), "no image yet: the run has not started");
    assert_eq!(error_of(&get(&url(&b, "/preview.png")), 409), "no preview yet: the run has not started");
    let e = error_of(&post(&url(&b, "/pause"), "text/plain", b""), 409);
    assert_eq!(e, "the run has not started yet: cancel it instead");

    // Cancelling a waiting job moves the one behind it up.
    let cancelled = json(&post(&url(&b, "/cancel"), "text/plain", b""));
    assert_eq!(cancelled["state"], "cancelled");
    wait_for(&server, &c, 10, "C to move up", |s| s["queue_position"] == 1);

    // Pause A: its iteration stops moving; the current image downloads.
    wait_for(&server, &a, 60, "A to run a few iterations", |s| s["history"].as_array().unwrap().len() >= 3);
    assert_eq!(json(&post(&url(&a, "/pause"), "text/plain", b""))["state"], "paused");
    std::thread::sleep(Duration::from_millis(300));
    let n = json(&get(&url(&a, ""))).get("history").unwrap().as_array().unwrap().len();
    std::thread::sleep(Duration::from_millis(400));
    let m = json(&get(&url(&a, ""))).get("history").unwrap().as_array().unwrap().len();
    assert_eq!(n, m, "a paused run must not iterate");
    let (status, png_bytes) = get(&url(&a, "/result.png"));
    assert_eq!((status, decode_png(&png_bytes)), (200, (32, 32)));

    // New weights while paused take effect at the next iteration after resuming.
    let before = json(&get(&url(&a, "")));
    let w = json!({"content": 5.0, "style": 1000.0, "tv": 1e6});
    assert_eq!(post_json(&url(&a, "/weights"), &w).0, 202);
    assert_eq!(json(&post(&url(&a, "/resume"), "text/plain", b""))["state"], "running");
    let after = wait_for(&server, &a, 30, "the weights to apply", |s| {
        s["weights"]["style"] == 1000.0 && s["history"].as_array().unwrap().len() > m
    });
    assert_eq!(before["weights"]["style"], 100.0);
    let history = after["history"].as_array().unwrap();
    let (x, y) = (&history[m - 1], &history[m]);
    let ratio = y["style"].as_f64().unwrap() / x["style"].as_f64().unwrap();
    assert!((5.0..15.0).contains(&ratio), "style loss ×{ratio} after the style weight went ×10");

    // Cancel A: it ends with its image kept, and C starts.
    post(&url(&a, "/cancel"), "text/plain", b"");
    let done = wait_for(&server, &a, 30, "A to end", |s| s["state"] == "cancelled");
    assert!(done["note"].as_str().unwrap().starts_with("stopped after"), "{done}");
    let (status, png_bytes) = get(&url(&a, "/result.png"));
    assert_eq!((status, decode_png(&png_bytes)), (200, (32, 32)));
    wait_for(&server, &c, 30, "C to start", |s| s["queue_position"].is_null() && s["state"] != "queued");
    post(&url(&c, "/cancel"), "text/plain", b"");
    wait_for(&server, &c, 30, "C to end", |s| s["state"] == "cancelled");
}

/// With an output folder, a finished run's image is written there as NAME-ID.png (the content's name,
/// the job id's first 8 characters; the name a download gets too), and so is the image of a run still
/// under way when the server stops (it stops after its iteration, and the server waits).
#[test]
fn with_an_output_folder_every_run_s_image_is_written_there_also_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_writing(random_net(), Limits::default(), dir.path());
    let (content, style) = (png(32, 24, 1), png(32, 32, 2));
    let short = id_of(&json(&submit(&server, &content, &[&style], &json!({"size": 32, "iterations": 2}))));
    let done = wait_for(&server, &short, 60, "the short run to end", |s| s["state"] == "finished");
    let file = dir.path().join(format!("content-{}.png", &short[..8]));
    let download = agent().get(&server.url(&format!("/api/jobs/{short}/result.png"))).call().unwrap();
    let disposition = download.headers().get("content-disposition").unwrap().to_str().unwrap();
    assert_eq!(disposition, format!("attachment; filename=\"content-{}.png\"", &short[..8]));
    assert_eq!(done["note"].as_str(), Some(format!("written to {}", file.display()).as_str()), "{done}");
    assert_eq!(decode_png(&std::fs::read(&file).unwrap()), (32, 24));

    let long = json!({"size": 32, "iterations": 2000});
    let running = id_of(&json(&submit(&server, &content, &[&style], &long)));
    wait_for(&server, &running, 60, "the long run to iterate", |s| {
        s["history"].as_array().unwrap().len() >= 2
    });
    drop(server);
    let file = dir.path().join(format!("content-{}.png", &running[..8]));
    assert_eq!(decode_png(&std::fs::read(&file).unwrap()), (32, 24));
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
}

#[test]
fn a_network_cut_at_relu4_2_runs_the_default_style_layers_it_has() {
    // The built-in compact VGG-16 stops at relu4_2: runs drop relu5_1 from the default style layers.
    let net = std::sync::Arc::new(
        impasto::Vgg::embedded(impasto::Pooling::Max, impasto::COMPACT_LAST_LAYER).expect("built-in model"),
    );
    let server = TestServer::start(net, Limits::default());
    let job =
        json(&submit(&server, &png(32, 32, 1), &[&png(32, 32, 2)], &json!({"size": 32, "iterations": 3})));
    let events = events_until_over(&server, &id_of(&job));
    let last = events.last().unwrap();
    assert!(last["state"] == "finished", "{last}");
    assert!(events.iter().any(|e| e["type"] == "step" && e["style"].as_f64().is_some_and(|s| s > 0.0)));
}
