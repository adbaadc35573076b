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

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod error;
mod jobs;
mod runner;
mod settings;
mod upload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use impasto::Vgg;

pub use error::ServeError;
pub use jobs::JobState;
pub use settings::{InitChoice, Limits, OptimizerChoice, Settings};

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
    /// Where every run's network and losses run (resolved: `Cpu` or `Gpu(Some(n))`).
    pub device: impasto::Device,
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Arc<jobs::App>,
}

impl Server {
    /// Binds `config.addr` (port 0 picks a free port).
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind { addr: config.addr, source })?;
        let app = jobs::App::new(config.net, config.limits, config.threads, config.device);
        Ok(Server { listener, app })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, ServeError> {
        self.listener
            .local_addr()
            .map_err(|source| ServeError::Io { what: "reading the bound address", source })
    }

    /// Serves until `shutdown` completes; then cancels every run, ends the event streams and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let app = self.app.clone();
        let router = api::router(self.app);
        let stop = async move {
            shutdown.await;
            app.shut_down();
        };
        axum::serve(self.listener, router)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|source| ServeError::Io { what: "serving", source })
    }
}

/// Runs the server until Ctrl-C, on a runtime of its own. `on_ready` gets the bound address before the
/// first request is taken (the CLI prints the URL and opens the browser there).
pub fn serve(config: ServeConfig, on_ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("impasto-serve")
        .enable_all()
        .build()
        .map_err(|source| ServeError::Io { what: "starting the async runtime", source })?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        on_ready(server.local_addr()?);
        server
            .run(async {
                // Without a signal handler there is nothing to wait for but the process's end.
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await
    })
}
