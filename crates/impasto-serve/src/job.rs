//! One job's state machine: its state (what the page sees, as a snapshot and as a stream of
//! [`Event`]s) and its controls (pause, resume, cancel, new weights), shared between the page's
//! requests and the thread that runs it. The queue that starts jobs is `queue.rs`; the run itself is
//! `runner.rs`.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use impasto::image::Rgb32FImage;
use impasto::{StyleConfig, Weights};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::settings::{Settings, WeightsJson};

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
    /// The content's file name as uploaded, if the form gave one.
    pub(crate) content_name: Option<String>,
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

/// The most characters of the content's name kept in a job's [`file_name`].
const NAME_CHARS: usize = 40;

/// The file name of a job's image: the content's uploaded name without its folders and extension
/// (characters other than ASCII letters, digits, `-`, `_` and `.` made `_`, at most [`NAME_CHARS`]),
/// then the job id's first 8 characters so that two runs of one photo do not collide:
/// `harbour-1a2b3c4d.png`; `impasto-1a2b3c4d.png` without a usable name.
pub(crate) fn file_name(upload: Option<&str>, id: &str) -> String {
    let base = upload.map_or("", |n| n.rsplit(['/', '\\']).next().unwrap_or(n));
    let stem = match base.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => base,
    };
    let safe: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .take(NAME_CHARS)
        .collect();
    let safe = safe.trim_start_matches('.');
    let safe = if safe.chars().all(|c| c == '_' || c == '.') { "impasto" } else { safe };
    format!("{safe}-{}.png", id.get(..8).unwrap_or(id))
}

/// One style-transfer job.
#[derive(Debug)]
pub(crate) struct Job {
    /// Random and unguessable (128 bits, in hex): knowing one job's id tells nothing of another's.
    pub(crate) id: String,
    /// The file name of its image, for downloads and the output folder ([`file_name`]).
    pub(crate) file_name: String,
    pub(crate) settings: Settings,
    pub(crate) events: broadcast::Sender<Event>,
    inner: Mutex<Inner>,
    control: Mutex<Control>,
    wake: Condvar,
}

impl Job {
    pub(crate) fn new(id: String, settings: Settings, inputs: Inputs) -> Job {
        let file_name = file_name(inputs.content_name.as_deref(), &id);
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
            file_name,
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
            id: self.id.clone(),
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

    /// Shows `note` beside the state (a run that changed its plan says so).
    pub(crate) fn note(&self, note: String) {
        self.change_state(|s| {
            s.note = Some(note);
            true
        });
    }

    pub(crate) fn set_queue_position(&self, position: usize) {
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

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn a_job_s_file_is_named_after_its_content_without_folders_or_odd_characters() {
        let id = "1a2b3c4d5e6f";
        for (upload, name) in [
            (Some("harbour.jpg"), "harbour-1a2b3c4d.png"),
            (Some("C:\\Users\\me\\Photo 1.JPG"), "Photo_1-1a2b3c4d.png"),
            (Some("../../etc/passwd"), "passwd-1a2b3c4d.png"),
            (Some("café.tar.png"), "caf_.tar-1a2b3c4d.png"),
            (Some(".hidden.png"), "hidden-1a2b3c4d.png"),
            (Some("..png"), "impasto-1a2b3c4d.png"),
            (Some("日本.png"), "impasto-1a2b3c4d.png"),
            (Some(""), "impasto-1a2b3c4d.png"),
            (None, "impasto-1a2b3c4d.png"),
        ] {
            assert_eq!(file_name(upload, id), name, "{upload:?}");
        }
        let long = format!("{}.png", "a".repeat(100));
        assert_eq!(file_name(Some(&long), id), format!("{}-1a2b3c4d.png", "a".repeat(NAME_CHARS)));
    }

    use super::*;
    use crate::settings::Limits;

    /// A job with a 16×16 content image and one style, as the queue would hold it.
    pub(crate) fn job(id: &str) -> Job {
        let img = Rgb32FImage::from_pixel(16, 16, impasto::image::Rgb([0.5, 0.5, 0.5]));
        let inputs = Inputs {
            content_name: None,
            content: img.clone(),
            styles: vec![img],
            config: StyleConfig::default(),
        };
        Job::new(id.into(), Settings::defaults_for(&Limits::default()), inputs)
    }

    pub(crate) fn started() -> Started {
        Started { width: 16, height: 16, iterations: 10, scales: Vec::new() }
    }

    /// The states the event stream has carried so far.
    fn states(rx: &mut broadcast::Receiver<Event>) -> Vec<JobState> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|e| if let Event::State(s) = e { Some(s.state) } else { None })
            .collect()
    }

    #[test]
    fn pause_resume_and_cancel_follow_the_run() {
        let j = job("a");
        let mut rx = j.events.subscribe();
        let refused = |r: Result<(), ApiError>| r.unwrap_err().message;
        assert_eq!(refused(j.pause()), "the run has not started yet: cancel it instead");
        j.set_state(JobState::Preparing, None, None);
        assert_eq!(refused(j.pause()), "the run has not started yet: cancel it instead");
        assert_eq!(refused(j.resume()), "the run is not paused");
        j.started(started());
        assert_eq!(j.state(), JobState::Running);
        j.pause().unwrap();
        j.pause().unwrap(); // twice is once
        assert!(j.is_paused());
        assert_eq!(j.snapshot().state.state, JobState::Paused);
        j.resume().unwrap();
        j.resume().unwrap();
        assert!(!j.is_paused());
        // A cancel is a request: the state says "running" until the run thread stops.
        j.cancel();
        assert!(j.is_cancelled());
        assert_eq!(j.state(), JobState::Running);
        j.set_state(JobState::Cancelled, None, Some("stopped after 3 iterations".into()));
        assert_eq!(
            states(&mut rx),
            [
                JobState::Preparing,
                JobState::Running,
                JobState::Paused,
                JobState::Running,
                JobState::Cancelled
            ]
        );
        // Once over, every control is refused and nothing changes.
        assert_eq!(refused(j.pause()), "the run is over");
        assert_eq!(refused(j.resume()), "the run is not paused");
        assert_eq!(refused(j.steer(Weights { content: 1.0, style: 1.0, tv: 0.0 })), "the run is over");
        assert_eq!(states(&mut rx), []);
    }

    #[test]
    fn a_paused_run_waits_until_resumed_or_cancelled() {
        for cancel in [false, true] {
            let j = Arc::new(job("b"));
            j.set_state(JobState::Preparing, None, None);
            j.started(started());
            j.pause().unwrap();
            let runner = {
                let j = Arc::clone(&j);
                std::thread::spawn(move || j.wait_while_paused())
            };
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(!runner.is_finished(), "a paused run went on");
            if cancel {
                j.cancel()
            } else {
                j.resume().unwrap()
            }
            assert_eq!(runner.join().unwrap(), cancel);
        }
    }

    /// The server side of the race the browser test caught: a run that ends while a pause is on its
    /// way is never shown as paused, and the event stream's last state is the end, whichever wins.
    #[test]
    fn a_run_that_ends_during_a_pause_stays_ended() {
        for round in 0..200 {
            let j = Arc::new(job("c"));
            j.set_state(JobState::Preparing, None, None);
            j.started(started());
            let mut rx = j.events.subscribe();
            let page = {
                let j = Arc::clone(&j);
                std::thread::spawn(move || j.pause())
            };
            j.set_state(JobState::Finished, None, None);
            let reply = page.join().unwrap();
            let seen = states(&mut rx);
            assert_eq!(seen.last(), Some(&JobState::Finished), "round {round}: {seen:?}");
            assert_eq!(j.state(), JobState::Finished, "round {round}");
            match reply {
                // The pause came first: it was shown, then the end.
                Ok(()) => assert_eq!(seen, [JobState::Paused, JobState::Finished], "round {round}"),
                Err(e) => {
                    assert_eq!(e.message, "the run is over", "round {round}");
                    assert_eq!(seen, [JobState::Finished], "round {round}");
                }
            }
        }
    }

    #[test]
    fn new_weights_wait_for_the_run_and_are_taken_once() {
        let j = job("d");
        let w = Weights { content: 1.0, style: 50.0, tv: 0.0 };
        j.steer(w).unwrap();
        assert_eq!(j.take_steer(), Some(w));
        assert_eq!(j.take_steer(), None);
        j.weights_applied(w, 7);
        assert_eq!(Weights::from(j.snapshot().weights), w);
    }
}
