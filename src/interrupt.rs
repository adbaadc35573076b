//! Ctrl-C, SIGTERM and SIGHUP: the first asks the run to stop after the current iteration (the observer
//! polls [`STOP_REQUESTED`]), so the current image and checkpoint are written; a second exits at once
//! with status 130. SIGTERM is what Slurm sends at a job's time limit and `kill` and Kubernetes send by
//! default, so a scheduled run keeps its work as an interactive one does.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::progress::Display;

/// Set by the first Ctrl-C (or SIGTERM, SIGHUP).
pub static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// The exit status of an interrupted run (128 + SIGINT), whichever of the signals stopped it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Installs the handler for Ctrl-C, SIGTERM and SIGHUP. The "stopping" note follows `display`: none
/// when quiet, on a line of its own below a progress bar. Failing to install a handler (it can only fail if something else already
/// did) leaves the default behaviour, so it is not an error.
pub fn install(display: Display) {
    // ctrlc calls the handler on one thread, one signal after another, so load-then-store is not racy.
    // The note is written before the flag is set: once it is set, the run may end and the process exit
    // before this thread gets to write.
    let _ = ctrlc::set_handler(move || {
        if STOP_REQUESTED.load(Ordering::SeqCst) {
            exit_now();
        }
        let newline = match display {
            Display::Quiet => None,
            Display::Bar => Some("\n"),
            Display::Plain { .. } => Some(""),
        };
        if let Some(newline) = newline {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{newline}impasto: stopping after this iteration (press Ctrl-C again to quit at once)"
            );
        }
        STOP_REQUESTED.store(true, Ordering::SeqCst);
    });
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

#[allow(clippy::exit)] // the second Ctrl-C must end the process from the handler thread
fn exit_now() -> ! {
    std::process::exit(EXIT_INTERRUPTED.into())
}
