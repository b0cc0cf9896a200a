//! This thread's time on a CPU and waiting for one, for the timing examples: on a shared
//! machine they move far less than wall time, which also counts waiting for a core.

use std::time::Duration;

/// (on a CPU, waiting in a run queue) so far (Linux `/proc/thread-self/schedstat`; None
/// elsewhere).
pub fn schedstat() -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((
        Duration::from_nanos(fields.next()??),
        Duration::from_nanos(fields.next()??),
    ))
}
