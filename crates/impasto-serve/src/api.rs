//! The HTTP routes, behind the access guard (`guard.rs`): the embedded page, job creation from the upload form, snapshots, the event stream,
//! preview and result images, and the controls. Every failure is an [`ApiError`] (JSON); no request,
//! however malformed, makes a handler panic.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::guard::{Access, guard};
use crate::job::{Event, Job};
use crate::queue::App;
use crate::runner::encode_png;
use crate::settings::{Settings, WeightsJson, check_weights, describe};
use crate::upload;

/// The page, its script and its styles (separate files: the Content-Security-Policy allows no inline
/// code).
const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");
const STYLES: &str = include_str!("page.css");

/// Bodies of the small JSON requests.
const SMALL_BODY: usize = 16 << 10;

pub(crate) fn router(app: Arc<App>, access: Arc<Access>) -> Router {
    let upload_limit = app.limits.max_upload_bytes;
    Router::new()
        .route("/", get(page))
        .route("/page.js", get(script))
        .route("/page.css", get(styles))
        .route("/api/limits", get(limits))
        .route("/api/jobs", post(create).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/api/jobs/{id}", get(snapshot))
        .route("/api/jobs/{id}/events", get(events))
        .route("/api/jobs/{id}/preview.png", get(preview))
        .route("/api/jobs/{id}/result.png", get(result))
        .route("/api/jobs/{id}/weights", post(weights).layer(DefaultBodyLimit::max(SMALL_BODY)))
        .route("/api/jobs/{id}/pause", post(pause))
        .route("/api/jobs/{id}/resume", post(resume))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
        .layer(axum::middleware::from_fn_with_state(access, guard))
}

type Result<T> = std::result::Result<T, ApiError>;

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn script() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

async fn styles() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLES).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page or API route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
}

async fn limits(State(app): State<Arc<App>>) -> Response {
    let body = serde_json::json!({
        "limits": app.limits,
        "text": describe(&app.limits),
        "defaults": Settings::defaults_for(&app.limits),
    });
    Json(body).into_response()
}

async fn create(
    State(app): State<Arc<App>>,
    form: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Response> {
    let (settings, inputs) = upload::read(form?, app.limits).await?;
    let job = app.submit(settings, inputs)?;
    Ok((StatusCode::CREATED, Json(job.snapshot())).into_response())
}

async fn snapshot(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    Ok(Json(app.job(&id)?.snapshot()).into_response())
}

/// A PNG response that is never cached.
fn png(bytes: Bytes, download: Option<String>) -> Response {
    let mut response =
        ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "no-store")], bytes).into_response();
    if let Some(name) = download
        && let Ok(value) = format!("attachment; filename=\"{name}\"").parse()
    {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn preview(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let job = app.job(&id)?;
    let preview =
        job.latest_preview().ok_or_else(|| ApiError::conflict("no preview yet: the run has not started"))?;
    Ok(png(preview.png, None))
}

async fn result(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let job = app.job(&id)?;
    let bytes = match job.image() {
        None => return Err(ApiError::conflict("no image yet: the run has not started")),
        Some(Ok(bytes)) => bytes,
        Some(Err(image)) => tokio::task::spawn_blocking(move || encode_png(&image))
            .await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the PNG encoder failed"))?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?,
    };
    Ok(png(bytes, Some(job.file_name.clone())))
}

async fn weights(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: std::result::Result<Json<WeightsJson>, JsonRejection>,
) -> Result<Response> {
    let job = app.job(&id)?;
    let Json(w) = body?;
    check_weights(w.into())?;
    if w.style == 0.0 {
        return Err(ApiError::bad_request("the style weight must stay above 0"));
    }
    job.steer(w.into())?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn pause(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let job = app.job(&id)?;
    job.pause()?;
    Ok(Json(job.snapshot()).into_response())
}

async fn resume(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let job = app.job(&id)?;
    job.resume()?;
    Ok(Json(job.snapshot()).into_response())
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Response> {
    let job = app.job(&id)?;
    app.cancel(&job)?;
    Ok(Json(job.snapshot()).into_response())
}

async fn events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = std::result::Result<SseEvent, Infallible>>>> {
    let job = app.job(&id)?;
    // Subscribed before the snapshot is taken, so nothing falls between them (the page ignores steps
    // it already has).
    let rx = job.events.subscribe();
    let first = Event::Snapshot(Box::new(job.snapshot()));
    let mut shutdown = app.shutdown.subscribe();
    let stopped = async move {
        let _ = shutdown.wait_for(|&stop| stop).await;
    };
    let stream = stream::unfold((Some(first), rx, job), next_event).take_until(stopped);
    Ok(Sse::new(stream.map(|e| Ok(to_sse(&e)))).keep_alive(KeepAlive::default()))
}

type EventState = (Option<Event>, tokio::sync::broadcast::Receiver<Event>, Arc<Job>);

async fn next_event((first, mut rx, job): EventState) -> Option<(Event, EventState)> {
    if let Some(e) = first {
        return Some((e, (None, rx, job)));
    }
    let e = match rx.recv().await {
        Ok(e) => e,
        // A listener that fell behind starts over from a fresh snapshot.
        Err(RecvError::Lagged(_)) => Event::Snapshot(Box::new(job.snapshot())),
        Err(RecvError::Closed) => return None,
    };
    Some((e, (None, rx, job)))
}

fn to_sse(e: &Event) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(e).unwrap_or_else(|_| "{}".into()))
}
