//! Shared helpers: a server on a random loopback port with its own runtime, networks (random weights for
//! fast HTTP tests, the real ones for the browser test), small PNGs, multipart bodies and an HTTP client
//! that never treats a status as an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use impasto::image::{ImageEncoder, Rgb, RgbImage, codecs::png::PngEncoder};
use impasto::{Arch, LayerKind, Pooling, Preprocess, Vgg};
use impasto_serve::{Limits, ServeConfig, Server};

/// `../shared` beside the repository (where CI puts it).
pub fn shared_image(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/images").join(name)
}

/// Whether this is CI, where a missing prerequisite is a failure.
pub fn under_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The real VGG-16 weights (`IMPASTO_WEIGHTS`, then the user cache); `None` with a note when missing,
/// a failure under CI.
#[allow(clippy::print_stderr)] // the note on why a test did nothing
pub fn real_weights() -> Option<PathBuf> {
    let env = std::env::var_os("IMPASTO_WEIGHTS").filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache = directories::ProjectDirs::from("", "", "impasto").map(|d| d.cache_dir().to_path_buf());
    match impasto::locate_weights(Arch::Vgg16, None, env.as_deref(), cache.as_deref()) {
        Ok(p) => Some(p),
        Err(e) => {
            assert!(!under_ci(), "CI=true but the real weights are missing: {e}");
            eprintln!("skipping: {e}");
            None
        }
    }
}

/// VGG-16 down to `relu5_1` with random weights: the default layers, at no file's cost.
pub fn random_net() -> Arc<Vgg> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        ((state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let mut weights = Vec::new();
    for l in Arch::Vgg16.layers() {
        if let LayerKind::Conv { c_in, c_out, conv, .. } = l.kind {
            if conv > 10 {
                break;
            }
            let scale = (2.0 / (9.0 * c_in as f32)).sqrt() * 1.7;
            let w = (0..c_out * c_in * 9).map(|_| next() * scale).collect();
            let b = (0..c_out).map(|_| next() * 0.1).collect();
            weights.push((w, b));
        }
    }
    Arc::new(Vgg::from_tensors(Arch::Vgg16, Pooling::Max, Preprocess::Torch, weights).expect("shapes match"))
}

/// A `w`×`h` PNG with a colour pattern (`seed` varies it).
pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x * 7 + u32::from(seed) * 40) as u8, (y * 5) as u8, ((x ^ y) * 3 + u32::from(seed)) as u8])
    });
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(img.as_raw(), w, h, impasto::image::ExtendedColorType::Rgb8)
        .expect("PNG encodes");
    out
}

/// A server on `127.0.0.1:0` with its own runtime thread; stopped (runs cancelled) when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The access token, when the server requires one.
    pub token: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(net: Arc<Vgg>, limits: Limits) -> TestServer {
        Self::start_with(net, limits, false)
    }

    /// A server that requires its access token (as it does beyond loopback).
    pub fn start_with_token(net: Arc<Vgg>, limits: Limits) -> TestServer {
        Self::start_with(net, limits, true)
    }

    /// A server whose runs take `device`.
    pub fn start_on(net: Arc<Vgg>, limits: Limits, device: impasto::Device) -> TestServer {
        Self::start_config(net, limits, false, device)
    }

    fn start_with(net: Arc<Vgg>, limits: Limits, require_token: bool) -> TestServer {
        Self::start_config(net, limits, require_token, impasto::Device::Cpu)
    }

    /// A server that writes each run's image into `output`.
    pub fn start_writing(net: Arc<Vgg>, limits: Limits, output: &Path) -> TestServer {
        let addr = "127.0.0.1:0".parse().unwrap();
        let device = impasto::Device::Cpu;
        let output = Some(output.to_path_buf());
        Self::start_server(ServeConfig {
            addr,
            net,
            limits,
            threads: 2,
            require_token: false,
            device,
            output,
        })
    }

    fn start_config(
        net: Arc<Vgg>,
        limits: Limits,
        require_token: bool,
        device: impasto::Device,
    ) -> TestServer {
        let addr = "127.0.0.1:0".parse().unwrap();
        Self::start_server(ServeConfig { addr, net, limits, threads: 2, require_token, device, output: None })
    }

    fn start_server(config: ServeConfig) -> TestServer {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let server = Server::bind(config).await.expect("binds a free loopback port");
                let token = server.token().map(str::to_owned);
                assert_eq!(server.url().unwrap(), {
                    let query = token.as_ref().map(|t| format!("?token={t}")).unwrap_or_default();
                    format!("http://{}/{query}", server.local_addr().unwrap())
                });
                ready.send((server.local_addr().unwrap(), token)).unwrap();
                server
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serves");
            });
        });
        let (addr, token) = addr.recv_timeout(Duration::from_secs(30)).expect("server started");
        TestServer { addr, token, stop: Some(stop), thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Whether the server still answers (no panic took it down).
    pub fn alive(&self) -> bool {
        get(&self.url("/api/limits")).0 == 200
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Status and body of a response.
pub type Reply = (u16, Vec<u8>);

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("the server answers");
    let status = r.status().as_u16();
    let body = r.body_mut().with_config().limit(64 << 20).read_to_vec().expect("body reads");
    (status, body)
}

pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call())
}

pub fn post(url: &str, content_type: &str, body: &[u8]) -> Reply {
    reply(agent().post(url).header("content-type", content_type).send(body))
}

pub fn post_json(url: &str, json: &serde_json::Value) -> Reply {
    post(url, "application/json", json.to_string().as_bytes())
}

/// The JSON of a reply.
pub fn json(r: &Reply) -> serde_json::Value {
    serde_json::from_slice(&r.1)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&r.1)))
}

/// The `error` message of a JSON error reply with status `status`.
#[track_caller]
pub fn error_of(r: &Reply, status: u16) -> String {
    let v = json(r);
    assert_eq!(r.0, status, "status; body {v}");
    v["error"].as_str().unwrap_or_else(|| panic!("no error message in {v}")).to_owned()
}

/// A multipart/form-data body: (field, file name or None, bytes) parts.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "impasto-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body
                .extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Posts a new job; returns the reply.
pub fn submit(server: &TestServer, content: &[u8], styles: &[&[u8]], settings: &serde_json::Value) -> Reply {
    let settings = settings.to_string();
    let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("content", Some("content.png"), content)];
    for s in styles {
        parts.push(("style", Some("style.png"), s));
    }
    parts.push(("settings", None, settings.as_bytes()));
    let (ct, body) = multipart(&parts);
    post(&server.url("/api/jobs"), &ct, &body)
}

/// Polls the job's snapshot until `done` holds (panics after `secs`).
#[track_caller]
pub fn wait_for(
    server: &TestServer,
    id: &str,
    secs: u64,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let snap = json(&get(&server.url(&format!("/api/jobs/{id}"))));
        if done(&snap) {
            return snap;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}; last snapshot: {snap}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
