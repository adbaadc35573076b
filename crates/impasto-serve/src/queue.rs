//! The jobs and the queue: the [`App`] keeps the jobs (by random id) and starts at most `max_runs` of
//! them at once through its [`Launch`] function, the others waiting in order with a visible position.
//! A started job holds a [`Slot`] until its run ends; dropping the slot starts the next job. The queue
//! knows nothing of how a run is done (`runner.rs` gives the launch function), so its state machine is
//! tested here without a network.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::job::{Inputs, Job, JobState, lock};
use crate::settings::{Limits, Settings};

/// Jobs remembered at most; the oldest finished ones are forgotten first.
const MAX_KEPT: usize = 64;

/// Starts a job's run (on a thread of its own); the run drops the [`Slot`] when it ends. An error
/// (no thread could be started) fails the job.
pub(crate) type Launch = Box<dyn Fn(Arc<Job>, Slot) -> std::io::Result<()> + Send + Sync>;

/// A run slot, held by a started job until its run ends: dropping it frees the slot and starts the
/// next waiting job.
#[derive(Debug)]
pub(crate) struct Slot(Arc<App>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.finished();
    }
}

/// A new job id: 128 random bits from the operating system's generator, in hex.
fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[derive(Debug, Default)]
struct Queue {
    running: usize,
    waiting: VecDeque<Arc<Job>>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Store {
    jobs: HashMap<String, Arc<Job>>,
    order: VecDeque<String>,
}

/// The server's shared state: the limits, the jobs and the queue.
pub(crate) struct App {
    pub(crate) limits: Limits,
    launch: Launch,
    jobs: Mutex<Store>,
    queue: Mutex<Queue>,
    /// Becomes true when the server shuts down (event streams end).
    pub(crate) shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("limits", &self.limits)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl App {
    pub(crate) fn new(limits: Limits, launch: Launch) -> Arc<App> {
        Arc::new(App {
            limits,
            launch,
            jobs: Mutex::default(),
            queue: Mutex::default(),
            shutdown: watch::channel(false).0,
        })
    }

    pub(crate) fn job(&self, id: &str) -> Result<Arc<Job>, ApiError> {
        lock(&self.jobs).jobs.get(id).cloned().ok_or_else(|| ApiError::no_job(id))
    }

    /// Queues a new job and starts it if a run slot is free.
    pub(crate) fn submit(self: &Arc<Self>, settings: Settings, inputs: Inputs) -> Result<Arc<Job>, ApiError> {
        let job = {
            let mut q = lock(&self.queue);
            if q.closed {
                return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping"));
            }
            if q.waiting.len() >= self.limits.max_queue {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the queue is full ({} runs waiting): try again when one has started",
                        q.waiting.len()
                    ),
                ));
            }
            let job = Arc::new(Job::new(new_id(), settings, inputs));
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
        store.order.push_back(job.id.clone());
        store.jobs.insert(job.id.clone(), job);
    }

    /// Starts waiting jobs while run slots are free, and renumbers the queue. The launches happen
    /// after the queue is unlocked: a launch that fails frees its slot, which pumps again.
    fn pump(self: &Arc<Self>) {
        let mut starting = Vec::new();
        {
            let mut q = lock(&self.queue);
            while q.running < self.limits.max_runs && !q.closed {
                let Some(job) = q.waiting.pop_front() else { break };
                q.running += 1;
                job.set_state(JobState::Preparing, None, None);
                starting.push(job);
            }
            for (i, job) in q.waiting.iter().enumerate() {
                job.set_queue_position(i + 1);
            }
        }
        for job in starting {
            if let Err(e) = (self.launch)(job.clone(), Slot(self.clone())) {
                job.set_state(
                    JobState::Failed,
                    Some(format!("cannot start a thread for the run: {e}")),
                    None,
                );
            }
        }
    }

    /// A run is done: its slot goes to the next job.
    /// The runs under way (their threads have not ended).
    pub(crate) fn running(&self) -> usize {
        lock(&self.queue).running
    }

    fn finished(self: &Arc<Self>) {
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    type Started = mpsc::Receiver<(Arc<Job>, Slot)>;

    /// An app whose runs are started by hand: each launch hands the job and its slot to the test.
    fn app(limits: Limits) -> (Arc<App>, Started) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let launch: Launch = Box::new(move |job, slot| {
            lock(&tx).send((job, slot)).map_err(|_| std::io::Error::other("the test is gone"))
        });
        (App::new(limits, launch), rx)
    }

    fn submit(app: &Arc<App>) -> Result<Arc<Job>, ApiError> {
        let j = crate::job::tests::job("unused");
        let inputs = j.take_inputs().unwrap();
        app.submit(j.settings.clone(), inputs)
    }

    fn position(job: &Job) -> Option<usize> {
        job.snapshot().state.queue_position
    }

    #[test]
    fn runs_start_in_order_as_slots_free_up() {
        let (app, started) = app(Limits { max_runs: 1, max_queue: 2, ..Limits::default() });
        let a = submit(&app).unwrap();
        let b = submit(&app).unwrap();
        let c = submit(&app).unwrap();
        let e = submit(&app).unwrap_err();
        assert_eq!(e.message, "the queue is full (2 runs waiting): try again when one has started");
        let (first, slot) = started.try_recv().unwrap();
        assert_eq!(first.id, a.id);
        assert!(started.try_recv().is_err(), "one run at a time");
        assert_eq!(
            (a.state(), b.state(), c.state()),
            (JobState::Preparing, JobState::Queued, JobState::Queued)
        );
        assert_eq!((position(&b), position(&c)), (Some(1), Some(2)));

        // The run ends and gives its slot back: the next job starts, the last one moves up.
        a.set_state(JobState::Finished, None, None);
        drop(slot);
        let (second, _slot) = started.try_recv().unwrap();
        assert_eq!(second.id, b.id);
        assert_eq!((b.state(), c.state(), position(&c)), (JobState::Preparing, JobState::Queued, Some(1)));
    }

    #[test]
    fn a_waiting_job_cancels_at_once_a_running_one_at_its_iteration() {
        let (app, started) = app(Limits { max_runs: 1, ..Limits::default() });
        let a = submit(&app).unwrap();
        let b = submit(&app).unwrap();
        let c = submit(&app).unwrap();
        let (_, slot) = started.try_recv().unwrap();
        app.cancel(&b).unwrap();
        assert_eq!(b.state(), JobState::Cancelled);
        assert_eq!(b.snapshot().state.note.as_deref(), Some("cancelled before it started"));
        assert_eq!(position(&c), Some(1));
        assert_eq!(app.cancel(&b).unwrap_err().message, "the run is over");
        app.cancel(&a).unwrap();
        assert!(a.is_cancelled() && a.state() == JobState::Preparing, "the run thread ends it");
        a.set_state(JobState::Cancelled, None, None);
        drop(slot);
        assert_eq!(started.try_recv().unwrap().0.id, c.id, "the cancelled job was skipped");
    }

    #[test]
    fn a_failed_launch_fails_the_job_and_frees_its_slot() {
        let launch: Launch = Box::new(|_, _| Err(std::io::Error::other("no threads left")));
        let app = App::new(Limits { max_runs: 1, ..Limits::default() }, launch);
        let a = submit(&app).unwrap();
        let b = submit(&app).unwrap();
        for j in [&a, &b] {
            assert_eq!(j.state(), JobState::Failed);
            let error = j.snapshot().state.error.unwrap();
            assert_eq!(error, "cannot start a thread for the run: no threads left");
        }
        assert_eq!(lock(&app.queue).running, 0);
    }

    #[test]
    fn job_ids_are_random_and_unguessable() {
        let (app, _started) = app(Limits { max_runs: 4, max_queue: 8, ..Limits::default() });
        let ids: Vec<String> = (0..4).map(|_| submit(&app).unwrap().id.clone()).collect();
        for id in &ids {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert_eq!(app.job(id).unwrap().id, *id);
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        // Sequential numbers name nothing.
        for guess in ["0", "1", "2", "00000000000000000000000000000001"] {
            assert!(app.job(guess).is_err(), "{guess}");
        }
    }

    #[test]
    fn shutting_down_cancels_everything_and_refuses_new_jobs() {
        let (app, started) = app(Limits { max_runs: 1, ..Limits::default() });
        let a = submit(&app).unwrap();
        let b = submit(&app).unwrap();
        let mut stopped = app.shutdown.subscribe();
        app.shut_down();
        assert!(a.is_cancelled());
        assert_eq!(b.state(), JobState::Cancelled);
        assert_eq!(b.snapshot().state.note.as_deref(), Some("the server stopped"));
        assert!(*stopped.borrow_and_update());
        assert_eq!(submit(&app).unwrap_err().message, "the server is stopping");
        // The running job's slot comes back; nothing else starts.
        drop(started.try_recv().unwrap());
        assert!(started.try_recv().is_err());
    }

    #[test]
    fn finished_jobs_are_forgotten_first() {
        let (app, started) = app(Limits { max_runs: MAX_KEPT + 1, max_queue: 1, ..Limits::default() });
        let first = submit(&app).unwrap();
        let _ = started.try_recv().unwrap();
        let running: Vec<_> = (1..MAX_KEPT).map(|_| submit(&app).unwrap()).collect();
        first.set_state(JobState::Finished, None, None);
        let newest = submit(&app).unwrap();
        assert!(app.job(&first.id).is_err(), "the finished job is forgotten");
        assert!(running.iter().chain([&newest]).all(|j| app.job(&j.id).is_ok()), "live jobs are kept");
    }
}
