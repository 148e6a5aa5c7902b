//! Logging that never takes the service down.
//!
//! Log lines go to stderr through a bounded queue, written by a thread of their own. A line that
//! cannot be written — stderr on a full disk (`ENOSPC`), a closed pipe (`EPIPE`: Rust programs
//! ignore `SIGPIPE`, as in `carbon-ledger serve | head`) — is dropped and counted; so is a line
//! that finds the queue full (a reader that stopped reading). Nothing on a request's path waits
//! for stderr or fails because of it, and nothing panics: `eprintln!` panics when it cannot
//! write, and tracing-subscriber reports its own write errors with it, so both are kept off the
//! service's path. `GET /metrics` shows the count as `log_lines_dropped_total`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds before new ones are dropped.
const QUEUE_LINES: usize = 8192;

/// How long [`LogGuard`] waits for the queue to be written when the program ends.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

static DROPPED_WRITE_FAILED: AtomicU64 = AtomicU64::new(0);
static DROPPED_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);

/// Log lines dropped since the process started, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DroppedLines {
    /// stderr refused the line (a full disk, a closed pipe...).
    pub write_failed: u64,
    /// The queue was full: stderr is not being read fast enough.
    pub queue_full: u64,
}

/// Log lines dropped since the process started.
pub fn dropped_lines() -> DroppedLines {
    DroppedLines {
        write_failed: DROPPED_WRITE_FAILED.load(Ordering::Relaxed),
        queue_full: DROPPED_QUEUE_FULL.load(Ordering::Relaxed),
    }
}

enum Message {
    Line(Vec<u8>),
    /// Answer once every line before this one is written (or dropped).
    Flush(SyncSender<()>),
}

/// Hands each log line to the writer thread; never blocks, never fails.
#[derive(Clone, Debug)]
pub struct QueueWriter {
    queue: SyncSender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Line(line) => write!(f, "Line({} bytes)", line.len()),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl std::io::Write for QueueWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self.queue.try_send(Message::Line(bytes.to_vec())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED_QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                DROPPED_WRITE_FAILED.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The line is handled: queued, or counted as dropped. Never an error to the caller.
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = QueueWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Writes queued lines to `out`; a line `out` refuses is counted and dropped.
fn write_lines(lines: Receiver<Message>, mut out: impl std::io::Write) {
    for message in lines {
        match message {
            Message::Line(line) => {
                if out.write_all(&line).and_then(|()| out.flush()).is_err() {
                    DROPPED_WRITE_FAILED.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// Keeps the writer thread; dropped at the end of `main`, it waits (briefly) for the queue to be
/// written, so that the last lines ("stopped; the store is closed") are not lost.
#[derive(Debug)]
pub struct LogGuard {
    queue: SyncSender<Message>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let (done, written) = mpsc::sync_channel(1);
        if send_within(&self.queue, Message::Flush(done), FLUSH_WAIT) {
            let _ = written.recv_timeout(FLUSH_WAIT);
        }
    }
}

/// Sends `message`, waiting at most `wait` for room in the queue (std's `SyncSender` has no
/// send with a deadline).
fn send_within(queue: &SyncSender<Message>, mut message: Message, wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        match queue.try_send(message) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                message = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TrySendError::Full(_)) => return false,
        }
    }
}

/// A queue to stderr and the thread that writes it.
pub fn stderr_queue() -> (QueueWriter, LogGuard) {
    let (queue, lines) = mpsc::sync_channel(QUEUE_LINES);
    // Without a thread there is no log: the queue's receiver is gone with the closure, and
    // every line counts as dropped.
    let _ = std::thread::Builder::new()
        .name("log-writer".to_owned())
        .spawn(move || write_lines(lines, std::io::stderr()));
    (
        QueueWriter {
            queue: queue.clone(),
        },
        LogGuard { queue },
    )
}

/// Installs the global subscriber: `RUST_LOG`, or `default`, to stderr through the queue.
/// Keep the guard until the program ends.
pub fn init(default: &str) -> LogGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (writer, guard) = stderr_queue();
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // It would report a failed write with `eprintln!`, which panics when stderr is broken.
        .log_internal_errors(false)
        .try_init();
    // A subscriber already installed (by a test harness) keeps logging its own way.
    let _ = installed;
    guard
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A sink that refuses every write, as a full disk or a closed pipe does.
    struct Broken;

    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_that_cannot_be_written_are_counted_not_raised() {
        let before = dropped_lines();
        let (queue, lines) = mpsc::sync_channel(4);
        let writer_thread = std::thread::spawn(move || write_lines(lines, Broken));
        let mut writer = QueueWriter { queue };
        for _ in 0..3 {
            assert_eq!(writer.write(b"a line\n").unwrap(), 7);
        }
        drop(writer);
        writer_thread.join().unwrap();
        assert!(dropped_lines().write_failed >= before.write_failed + 3);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let before = dropped_lines();
        let (queue, _lines) = mpsc::sync_channel(1);
        let mut writer = QueueWriter { queue };
        for _ in 0..5 {
            assert_eq!(writer.write(b"x\n").unwrap(), 2);
        }
        assert!(dropped_lines().queue_full >= before.queue_full + 4);
    }
}
