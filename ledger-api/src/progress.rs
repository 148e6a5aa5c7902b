//! Progress of the long commands — `check`, `verify`, `restore` — on standard error, shown for
//! the core's [`Progress`] hook: a bar (indicatif) when standard error is a terminal, and plain
//! lines when it is not (a log file, a pipe, CI): one at each tenth of the way, one at least
//! every [`LINE_INTERVAL`] in between, and one at the end. Standard output carries the
//! command's result alone, as before.
//!
//! ```text
//! check: 100000 of 1000000 entries (10 %)
//! check: 200000 of 1000000 entries (20 %)
//! ```

use std::io::{IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger_core::progress::Progress;

/// The longest time between two plain lines while a pass goes on.
pub const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// Shows how far a long command has got, on standard error (see the module documentation).
#[derive(Debug)]
pub struct Reporter {
    /// The command, at the start of each line (`check`, `verify`, `restore`).
    what: String,
    shown: Shown,
}

#[derive(Debug)]
enum Shown {
    Bar {
        bar: ProgressBar,
        /// The bar's length as last set, to set it only when it changes.
        length: AtomicU64,
    },
    Lines(Mutex<Lines>),
}

/// Where the plain lines are.
#[derive(Debug)]
struct Lines {
    /// The next count that is a tenth of the way (or more) and gets a line.
    next_done: u64,
    last_line: Instant,
    /// The count the last line showed.
    shown: Option<u64>,
    /// The latest count and total told.
    latest: Option<(u64, u64)>,
}

impl Reporter {
    /// A bar when standard error is a terminal, plain lines otherwise.
    pub fn new(what: &str) -> Self {
        if std::io::stderr().is_terminal() {
            Self::bar(what)
        } else {
            Self::lines(what)
        }
    }

    /// A bar on standard error, whatever it is. It is drawn from the first count on, and
    /// cleared when the pass is over, so that the command's result follows on a clean line.
    pub fn bar(what: &str) -> Self {
        let bar = ProgressBar::hidden();
        let style = ProgressStyle::with_template(
            "{msg}: [{elapsed_precise}] [{wide_bar}] {human_pos}/{human_len} entries ({eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.set_message(what.to_owned());
        Self {
            what: what.to_owned(),
            shown: Shown::Bar {
                bar,
                length: AtomicU64::new(0),
            },
        }
    }

    /// Plain lines on standard error, whatever it is.
    pub fn lines(what: &str) -> Self {
        Self {
            what: what.to_owned(),
            shown: Shown::Lines(Mutex::new(Lines {
                next_done: 0,
                last_line: Instant::now(),
                shown: None,
                latest: None,
            })),
        }
    }

    /// The pass is over: the bar is drawn complete, or the last count gets its line if it has
    /// none yet. Nothing is shown for a pass that told nothing.
    pub fn finish(&self) {
        match &self.shown {
            Shown::Bar { bar, .. } => bar.finish_and_clear(),
            Shown::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((done, total)) = lines.latest {
                    if lines.shown != Some(done) {
                        self.line(&mut lines, done, total);
                    }
                }
            }
        }
    }

    fn line(&self, lines: &mut Lines, done: u64, total: u64) {
        let percent = match total {
            0 => 100,
            total => {
                u64::try_from(u128::from(done.min(total)) * 100 / u128::from(total)).unwrap_or(100)
            }
        };
        // A line that cannot be written is dropped: progress never fails a command.
        let _ = writeln!(
            std::io::stderr(),
            "{}: {done} of {total} entries ({percent} %)",
            self.what
        );
        lines.shown = Some(done);
        lines.last_line = Instant::now();
        let step = (total / 10).max(1);
        lines.next_done = (done / step + 1) * step;
    }
}

impl Progress for Reporter {
    fn entries(&self, done: u64, total: u64) {
        match &self.shown {
            Shown::Bar { bar, length } => {
                let wanted = total.max(done);
                let before = length.swap(wanted, Ordering::Relaxed);
                if before != wanted {
                    bar.set_length(wanted);
                    if before == 0 {
                        bar.set_draw_target(ProgressDrawTarget::stderr());
                    }
                }
                bar.set_position(done);
            }
            Shown::Lines(lines) => {
                let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
                lines.latest = Some((done, total));
                let due = (done >= lines.next_done && lines.shown != Some(done))
                    || lines.last_line.elapsed() >= LINE_INTERVAL;
                if due {
                    self.line(&mut lines, done, total);
                }
            }
        }
    }
}

impl Drop for Reporter {
    /// A bar left unfinished (the command failed) is cleared too: the error that follows names
    /// the entry where it stopped.
    fn drop(&mut self) {
        if let Shown::Bar { bar, .. } = &self.shown {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}
