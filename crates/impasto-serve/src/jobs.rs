//! Jobs and the queue: each job's state (what the page sees, as a snapshot and as a stream of
//! [`Event`]s), its controls (pause, resume, cancel, new weights) shared with the thread that runs it,
//! and the [`App`] that keeps the jobs and starts at most `max_runs` of them at once, the others
//! waiting in order with a visible position.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use impasto::image::Rgb32FImage;
use impasto::{StyleConfig, Vgg, Weights};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::error::ApiError;
use crate::settings::{Limits, Settings, WeightsJson};

/// Jobs remembered at most; the oldest finished ones are forgotten first.
const MAX_KEPT: usize = 64;
/// Events buffered per job for slow listeners (who get a fresh snapshot when they fall behind).
const EVENT_BUFFER: usize = 256;

/// Locks a mutex, also after a panic elsewhere (the data is plain state, always consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a free run slot.
    Queued,
    /// Started: computing the content and style targets.
    Preparing,
    /// Optimising.
    Running,
    /// Stopped between two iterations until resumed or cancelled.
    Paused,
    /// Done (all iterations, or converged).
    Finished,
    /// Cancelled; the image it had reached is kept.
    Cancelled,
    /// Failed; the message says why.
    Failed,
}

impl JobState {
    /// Whether the job is over.
    pub fn is_over(self) -> bool {
        matches!(self, JobState::Finished | JobState::Cancelled | JobState::Failed)
    }
}

/// The job's state as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StateInfo {
    pub(crate) state: JobState,
    /// 1-based position in the queue while queued.
    pub(crate) queue_position: Option<usize>,
    pub(crate) error: Option<String>,
    /// How a finished run ended, when it is worth saying ("converged").
    pub(crate) note: Option<String>,
}

/// One scale of the schedule.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScaleInfo {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) iterations: usize,
}

/// Facts known once the run has started.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Started {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) iterations: usize,
    pub(crate) scales: Vec<ScaleInfo>,
}

/// One iteration's numbers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepInfo {
    pub(crate) iteration: usize,
    pub(crate) iterations: usize,
    /// 0-based.
    pub(crate) scale: usize,
    pub(crate) scales: usize,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) content: f64,
    pub(crate) style: f64,
    pub(crate) tv: f64,
    pub(crate) total: f64,
    /// Seconds of optimisation so far, pauses excluded.
    pub(crate) elapsed_s: f64,
    /// Estimated seconds left (None until a rate is known).
    pub(crate) eta_s: Option<f64>,
}

/// Everything about a job, for a page that (re)connects.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    pub(crate) id: String,
    #[serde(flatten)]
    pub(crate) state: StateInfo,
    pub(crate) settings: Settings,
    /// The weights in force.
    pub(crate) weights: WeightsJson,
    pub(crate) started: Option<Started>,
    pub(crate) history: Vec<StepInfo>,
    /// The latest preview's number (changes with every new preview).
    pub(crate) preview_frame: Option<u64>,
}

/// What the event stream carries, as JSON with a `type` field.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Event {
    Snapshot(Box<Snapshot>),
    State(StateInfo),
    Started(Started),
    Step(StepInfo),
    Preview {
        frame: u64,
        iteration: usize,
    },
    /// New weights took effect after `iteration`.
    Weights {
        weights: WeightsJson,
        iteration: usize,
    },
}

/// The images and configuration of a job that has not started.
#[derive(Debug)]
pub(crate) struct Inputs {
    pub(crate) content: Rgb32FImage,
    pub(crate) styles: Vec<Rgb32FImage>,
    pub(crate) config: StyleConfig,
}

/// A PNG preview.
#[derive(Debug, Clone)]
pub(crate) struct Preview {
    pub(crate) frame: u64,
    pub(crate) png: Bytes,
}

#[derive(Debug)]
struct Inner {
    state: StateInfo,
    started: Option<Started>,
    history: Vec<StepInfo>,
    weights: WeightsJson,
    preview: Option<Preview>,
    /// The latest image of a running job (for downloads), replaced by `result` at the end.
    current: Option<Arc<Rgb32FImage>>,
    result: Option<Bytes>,
    inputs: Option<Inputs>,
}

/// What the page asks of the running thread.
#[derive(Debug, Default)]
struct Control {
    paused: bool,
    cancelled: bool,
    steer: Option<Weights>,
}

/// One style-transfer job.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) settings: Settings,
    pub(crate) events: broadcast::Sender<Event>,
    inner: Mutex<Inner>,
    control: Mutex<Control>,
    wake: Condvar,
}

impl Job {
    fn new(id: u64, settings: Settings, inputs: Inputs) -> Job {
        let weights = settings.weights().into();
        let state = StateInfo { state: JobState::Queued, queue_position: None, error: None, note: None };
        let inner = Inner {
            state,
            started: None,
            history: Vec::new(),
            weights,
            preview: None,
            current: None,
            result: None,
            inputs: Some(inputs),
        };
        Job {
            id,
            settings,
            events: broadcast::channel(EVENT_BUFFER).0,
            inner: Mutex::new(inner),
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
        }
    }

    fn publish(&self, event: Event) {
        // No listener is fine: the snapshot has everything.
        let _ = self.events.send(event);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let inner = lock(&self.inner);
        Snapshot {
            id: self.id.to_string(),
            state: inner.state.clone(),
            settings: self.settings.clone(),
            weights: inner.weights,
            started: inner.started.clone(),
            history: inner.history.clone(),
            preview_frame: inner.preview.as_ref().map(|p| p.frame),
        }
    }

    pub(crate) fn state(&self) -> JobState {
        lock(&self.inner).state.state
    }

    /// Changes the state with `change` (which says whether it changed anything) and tells the
    /// listeners, under the lock, so that they see the changes in the order they were made.
    fn change_state(&self, change: impl FnOnce(&mut StateInfo) -> bool) -> bool {
        let mut inner = lock(&self.inner);
        let changed = change(&mut inner.state);
        if changed {
            self.publish(Event::State(inner.state.clone()));
        }
        changed
    }

    /// Moves to `state` (with an error or a note) and tells the listeners.
    pub(crate) fn set_state(&self, state: JobState, error: Option<String>, note: Option<String>) {
        self.change_state(|s| {
            *s = StateInfo { state, queue_position: None, error, note };
            true
        });
    }

    fn set_queue_position(&self, position: usize) {
        self.change_state(|s| {
            let changed = s.state == JobState::Queued && s.queue_position != Some(position);
            if changed {
                s.queue_position = Some(position);
            }
            changed
        });
    }

    pub(crate) fn take_inputs(&self) -> Option<Inputs> {
        lock(&self.inner).inputs.take()
    }

    pub(crate) fn started(&self, started: Started) {
        lock(&self.inner).started = Some(started.clone());
        self.publish(Event::Started(started));
        self.change_state(|s| {
            let changed = s.state == JobState::Preparing;
            if changed {
                s.state = JobState::Running;
            }
            changed
        });
    }

    pub(crate) fn step(&self, step: StepInfo) {
        lock(&self.inner).history.push(step.clone());
        self.publish(Event::Step(step));
    }

    /// Keeps a new preview (and the image it shows, for downloads).
    pub(crate) fn preview(&self, png: Bytes, image: Arc<Rgb32FImage>, iteration: usize) {
        let frame = {
            let mut inner = lock(&self.inner);
            let frame = inner.preview.as_ref().map_or(1, |p| p.frame + 1);
            inner.preview = Some(Preview { frame, png });
            inner.current = Some(image);
            frame
        };
        self.publish(Event::Preview { frame, iteration });
    }

    pub(crate) fn latest_preview(&self) -> Option<Preview> {
        lock(&self.inner).preview.clone()
    }

    /// The final PNG, or else the latest image (to be encoded by the caller).
    pub(crate) fn image(&self) -> Option<Result<Bytes, Arc<Rgb32FImage>>> {
        let inner = lock(&self.inner);
        match (&inner.result, &inner.current) {
            (Some(png), _) => Some(Ok(png.clone())),
            (None, Some(img)) => Some(Err(img.clone())),
            (None, None) => None,
        }
    }

    /// Keeps the final image; the working copy is dropped.
    pub(crate) fn set_result(&self, png: Bytes) {
        let mut inner = lock(&self.inner);
        inner.result = Some(png);
        inner.current = None;
    }

    pub(crate) fn weights_applied(&self, weights: Weights, iteration: usize) {
        let weights = WeightsJson::from(weights);
        lock(&self.inner).weights = weights;
        self.publish(Event::Weights { weights, iteration });
    }

    // ---- controls, from the page

    /// Pauses a running job: the run thread stops at the end of its iteration. The state is checked
    /// and changed under the lock, so a run that ends meanwhile is never shown as paused.
    pub(crate) fn pause(&self) -> Result<(), ApiError> {
        let mut refusal = None;
        self.change_state(|s| match s.state {
            JobState::Running => {
                lock(&self.control).paused = true;
                s.state = JobState::Paused;
                true
            }
            JobState::Paused => false,
            over if over.is_over() => {
                refusal = Some("the run is over");
                false
            }
            _ => {
                refusal = Some("the run has not started yet: cancel it instead");
                false
            }
        });
        refusal.map_or(Ok(()), |r| Err(ApiError::conflict(r)))
    }

    pub(crate) fn resume(&self) -> Result<(), ApiError> {
        let mut refusal = None;
        self.change_state(|s| match s.state {
            JobState::Paused => {
                lock(&self.control).paused = false;
                self.wake.notify_all();
                s.state = JobState::Running;
                true
            }
            JobState::Running => false,
            _ => {
                refusal = Some("the run is not paused");
                false
            }
        });
        refusal.map_or(Ok(()), |r| Err(ApiError::conflict(r)))
    }

    /// Asks the running thread to stop at the end of its iteration (the queue removes a waiting job).
    pub(crate) fn cancel(&self) {
        lock(&self.control).cancelled = true;
        self.wake.notify_all();
    }

    pub(crate) fn steer(&self, weights: Weights) -> Result<(), ApiError> {
        if self.state().is_over() {
            return Err(ApiError::conflict("the run is over"));
        }
        lock(&self.control).steer = Some(weights);
        Ok(())
    }

    // ---- controls, from the running thread

    pub(crate) fn is_cancelled(&self) -> bool {
        lock(&self.control).cancelled
    }

    pub(crate) fn is_paused(&self) -> bool {
        lock(&self.control).paused
    }

    /// Blocks while paused; returns whether the job was cancelled.
    pub(crate) fn wait_while_paused(&self) -> bool {
        let mut c = lock(&self.control);
        while c.paused && !c.cancelled {
            c = self.wake.wait(c).unwrap_or_else(PoisonError::into_inner);
        }
        c.cancelled
    }

    pub(crate) fn take_steer(&self) -> Option<Weights> {
        lock(&self.control).steer.take()
    }
}

#[derive(Debug, Default)]
struct Queue {
    running: usize,
    waiting: VecDeque<Arc<Job>>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Store {
    jobs: HashMap<u64, Arc<Job>>,
    order: VecDeque<u64>,
}

/// The server's shared state: the network, the limits, the jobs and the queue.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) net: Arc<Vgg>,
    pub(crate) limits: Limits,
    pub(crate) threads: usize,
    pub(crate) device: impasto::Device,
    jobs: Mutex<Store>,
    queue: Mutex<Queue>,
    next_id: AtomicU64,
    /// Becomes true when the server shuts down (event streams end).
    pub(crate) shutdown: watch::Sender<bool>,
}

impl App {
    pub(crate) fn new(net: Arc<Vgg>, limits: Limits, threads: usize, device: impasto::Device) -> Arc<App> {
        Arc::new(App {
            net,
            limits,
            threads,
            device,
            jobs: Mutex::default(),
            queue: Mutex::default(),
            next_id: AtomicU64::new(1),
            shutdown: watch::channel(false).0,
        })
    }

    pub(crate) fn job(&self, id: &str) -> Result<Arc<Job>, ApiError> {
        let found = id.parse::<u64>().ok().and_then(|n| lock(&self.jobs).jobs.get(&n).cloned());
        found.ok_or_else(|| ApiError::no_job(id))
    }

    /// Queues a new job and starts it if a run slot is free.
    pub(crate) fn submit(self: &Arc<Self>, settings: Settings, inputs: Inputs) -> Result<Arc<Job>, ApiError> {
        let job = {
            let mut q = lock(&self.queue);
            if q.closed {
                return Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "the server is stopping",
                ));
            }
            if q.waiting.len() >= self.limits.max_queue {
                return Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the queue is full ({} runs waiting): try again when one has started",
                        q.waiting.len()
                    ),
                ));
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let job = Arc::new(Job::new(id, settings, inputs));
            self.remember(job.clone());
            q.waiting.push_back(job.clone());
            job
        };
        self.pump();
        Ok(job)
    }

    fn remember(&self, job: Arc<Job>) {
        let mut store = lock(&self.jobs);
        while store.jobs.len() >= MAX_KEPT {
            let over =
                store.order.iter().position(|id| store.jobs.get(id).is_none_or(|j| j.state().is_over()));
            let Some(i) = over else { break };
            if let Some(id) = store.order.remove(i) {
                store.jobs.remove(&id);
            }
        }
        store.order.push_back(job.id);
        store.jobs.insert(job.id, job);
    }

    /// Starts waiting jobs while run slots are free, and renumbers the queue.
    fn pump(self: &Arc<Self>) {
        let mut q = lock(&self.queue);
        while q.running < self.limits.max_runs && !q.closed {
            let Some(job) = q.waiting.pop_front() else { break };
            q.running += 1;
            job.set_state(JobState::Preparing, None, None);
            let app = Arc::clone(self);
            let worker = Arc::clone(&job);
            let spawned = std::thread::Builder::new()
                .name(format!("impasto-run-{}", job.id))
                .spawn(move || crate::runner::run(&app, &worker));
            if let Err(e) = spawned {
                q.running -= 1;
                job.set_state(
                    JobState::Failed,
                    Some(format!("cannot start a thread for the run: {e}")),
                    None,
                );
            }
        }
        for (i, job) in q.waiting.iter().enumerate() {
            job.set_queue_position(i + 1);
        }
    }

    /// A run thread is done: its slot goes to the next job.
    pub(crate) fn finished(self: &Arc<Self>) {
        {
            let mut q = lock(&self.queue);
            q.running = q.running.saturating_sub(1);
        }
        self.pump();
    }

    /// Cancels a job: a waiting one leaves the queue at once, a running one stops after its iteration.
    pub(crate) fn cancel(self: &Arc<Self>, job: &Arc<Job>) -> Result<(), ApiError> {
        if job.state().is_over() {
            return Err(ApiError::conflict("the run is over"));
        }
        let dequeued = {
            let mut q = lock(&self.queue);
            let before = q.waiting.len();
            q.waiting.retain(|j| j.id != job.id);
            q.waiting.len() != before
        };
        job.cancel();
        if dequeued {
            job.set_state(JobState::Cancelled, None, Some("cancelled before it started".into()));
            self.pump();
        }
        Ok(())
    }

    /// Stops taking jobs, cancels every job and ends the event streams.
    pub(crate) fn shut_down(&self) {
        let waiting: Vec<Arc<Job>> = {
            let mut q = lock(&self.queue);
            q.closed = true;
            q.waiting.drain(..).collect()
        };
        for job in waiting {
            job.set_state(JobState::Cancelled, None, Some("the server stopped".into()));
        }
        for job in lock(&self.jobs).jobs.values() {
            job.cancel();
        }
        let _ = self.shutdown.send(true);
    }
}
