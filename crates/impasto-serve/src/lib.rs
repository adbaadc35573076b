//! impasto-serve: the web UI of impasto — a local page to start style transfers, watch them improve
//! live, and steer them (weights, pause, cancel, download) while they run.
//!
//! [`serve`] runs the server until Ctrl-C on a tokio runtime of its own, so its callers (the `impasto
//! serve` command) stay synchronous, as the `impasto` library is. [`Server`] is the same server for
//! callers that have a runtime (tests bind port 0 and read [`Server::local_addr`]).
//!
//! Each run executes on a thread of its own, calling [`impasto::stylize`] with an observer that
//! publishes its progress (iteration, losses, scale, ETA) to the page over server-sent events and keeps
//! a PNG preview of the current image; the page's weight sliders reach the run through
//! [`impasto::Observer::steer`], and pausing blocks the run inside the observer until it is resumed or
//! cancelled. At most [`Limits::max_runs`] runs go at once; later ones wait in a queue whose position
//! the page shows.
//!
//! # HTTP API
//! Every error is JSON `{"error": "one line for a person"}` with a 4xx/5xx status.
//!
//! | request | what |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /api/limits` | the [`Limits`] and the default settings |
//! | `POST /api/jobs` | multipart form: `content` (one image), `style` (one or more), `settings` (JSON [`Settings`]); answers the new job |
//! | `GET /api/jobs/{id}` | the job's whole state, loss history included |
//! | `GET /api/jobs/{id}/events` | server-sent events: a snapshot, then each change |
//! | `GET /api/jobs/{id}/preview.png` | the latest preview (throttled to one every [`PREVIEW_INTERVAL`]) |
//! | `GET /api/jobs/{id}/result.png` | the current image (while running) or the final one, as a download |
//! | `POST /api/jobs/{id}/weights` | JSON `{"content": α, "style": β, "tv": λ}`: new weights from the next iteration on |
//! | `POST /api/jobs/{id}/pause`, `/resume`, `/cancel` | control the run |
//!
//! Job ids are random (128 bits). `GET /page.js` and `GET /page.css` are the page's script and styles.
//!
//! # Access
//! As in Jupyter: a request must name this machine as its host (`localhost`, a loopback address, or
//! the address bound), which keeps out web pages that reach the server through DNS rebinding; a
//! state-changing request whose `Origin` is another site is refused (403); and when a token is
//! required — always when the server listens beyond loopback, or when [`ServeConfig::require_token`]
//! says so — every request carries it: the URL of [`Server::url`] ends with `?token=…`, which sets a
//! cookie for the page's later requests (or send `Authorization: token …`); without it the answer is
//! 401. Every response carries a Content-Security-Policy (no inline code, nothing from elsewhere, no
//! framing), `X-Content-Type-Options: nosniff` and `X-Frame-Options: DENY`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod error;
mod guard;
mod job;
mod queue;
mod runner;
mod settings;
mod upload;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use impasto::Vgg;

pub use error::ServeError;
pub use job::JobState;
pub use settings::{InitChoice, Limits, OptimizerChoice, Settings, StyleLossChoice};

/// The shortest time between two preview images of a run (each costs a PNG encoding).
pub const PREVIEW_INTERVAL: Duration = Duration::from_millis(250);

/// What the server needs: where to listen, the network, and its limits.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The address to listen on (the CLI's default is `127.0.0.1:8787`).
    pub addr: SocketAddr,
    /// The network every run uses, loaded once (down to `relu5_1` at least, for the default layers).
    pub net: Arc<Vgg>,
    /// Upload, size and queue limits.
    pub limits: Limits,
    /// Worker threads per run (0 = one per core).
    pub threads: usize,
    /// Require a random access token also on a loopback address (beyond loopback it always is).
    pub require_token: bool,
    /// Where every run's network and losses run (resolved: `Cpu` or `Gpu(Some(n))`).
    pub device: impasto::Device,
    /// A folder (that exists) where each run's image is written as `NAME-ID.png` (the content's
    /// uploaded name, the job id's first 8 characters) when the run ends: finished, stopped, or failed with a last good image. When the
    /// server stops, it waits (up to a minute) for the runs under way to stop after their iteration,
    /// so their images are written too. `None`: images are kept in memory only, for the page to
    /// download.
    pub output: Option<PathBuf>,
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Arc<queue::App>,
    access: Arc<guard::Access>,
    token: Option<String>,
    output: Option<PathBuf>,
}

impl Server {
    /// Binds `config.addr` (port 0 picks a free port), with a new random access token if one is
    /// required.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|error| ServeError::Bind { addr: config.addr, error })?;
        let bound = listener
            .local_addr()
            .map_err(|error| ServeError::Io { what: "reading the bound address", error })?;
        let token = (config.require_token || !bound.ip().is_loopback()).then(guard::new_token);
        let access = Arc::new(guard::Access::new(bound, token.clone()));
        let output = config.output.clone();
        let launch = runner::launcher(config.net, config.threads, config.device, config.output);
        let app = queue::App::new(config.limits, launch);
        Ok(Server { listener, app, access, token, output })
    }

    /// The access token every request must carry, if one is required.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The URL to open: the bound address (127.0.0.1 for a wildcard address), with `?token=…` when a
    /// token is required.
    pub fn url(&self) -> Result<String, ServeError> {
        let bound = self.local_addr()?;
        let ip = match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let query = self.token.as_ref().map(|t| format!("?token={t}")).unwrap_or_default();
        Ok(format!("http://{}/{query}", SocketAddr::new(ip, bound.port())))
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener
            .local_addr()
            .map_err(|error| ServeError::Io { what: "reading the bound address", error })
    }

    /// Serves until `shutdown` completes; then cancels every run, ends the event streams and returns
    /// (with an output folder, once the runs under way have stopped and written their images).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let app = self.app.clone();
        let router = api::router(self.app, self.access);
        let stop = {
            let app = app.clone();
            async move {
                shutdown.await;
                app.shut_down();
            }
        };
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|error| ServeError::Io { what: "serving", error });
        // Cancelled runs stop after their iteration; a minute covers the slowest (a large image on
        // a small CPU) without hanging on a device that never answers.
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while self.output.is_some() && app.running() > 0 && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        served
    }
}

/// Runs the server until Ctrl-C (or SIGTERM, SIGHUP), on a runtime of its own. `on_ready` gets the bound server before the
/// first request is taken (the CLI prints its [`Server::url`] and opens the browser there); the Ctrl-C
/// handler is in place by then, so a Ctrl-C the moment the URL is out stops the server cleanly.
pub fn serve(config: ServeConfig, on_ready: impl FnOnce(&Server)) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("impasto-serve")
        .enable_all()
        .build()
        .map_err(|error| ServeError::Io { what: "starting the async runtime", error })?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        let interrupted = ctrl_c()?;
        on_ready(&server);
        server.run(interrupted).await
    })
}

/// Installs the Ctrl-C, SIGTERM and SIGHUP handlers now (the process no longer dies of them); the
/// future completes at the first of them. SIGTERM is how Kubernetes, systemd and `kill` stop a server.
/// Needs a tokio runtime.
#[cfg(unix)]
fn ctrl_c() -> Result<impl Future<Output = ()> + Send + 'static, ServeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let install =
        |kind| signal(kind).map_err(|error| ServeError::Io { what: "installing the Ctrl-C handler", error });
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    let mut hangup = install(SignalKind::hangup())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
    })
}

/// Installs the Ctrl-C handler now; the future completes at the first Ctrl-C. Needs a tokio runtime.
#[cfg(windows)]
fn ctrl_c() -> Result<impl Future<Output = ()> + Send + 'static, ServeError> {
    let mut signal = tokio::signal::windows::ctrl_c()
        .map_err(|error| ServeError::Io { what: "installing the Ctrl-C handler", error })?;
    Ok(async move {
        signal.recv().await;
    })
}
