//! Named crash points for crash tests (feature `failpoints`).
//!
//! With the feature on, setting `TRAILKEEP_FAILPOINT=<name>[:<n>]` makes the process kill
//! itself with SIGKILL the n-th time (default 1st) it reaches the point `<name>`. Without the
//! feature every call compiles to nothing.
//!
//! `TRAILKEEP_FAILPOINT_ERROR=<name>[:<n>]` instead makes [`fails`] return true from the
//! n-th time on at the point `<name>`: an injected I/O failure (e.g. of fsync).

/// Reaches the crash point `name`.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("TRAILKEEP_FAILPOINT").ok()?;
        let (point, n) = match spec.split_once(':') {
            Some((p, n)) => (p.to_owned(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        Some((point, n))
    });
    if let Some((point, n)) = target {
        if point == name && COUNT.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            eprintln!("failpoint {name} reached: killing the process");
            // SIGKILL, like a power cut as far as this process is concerned.
            let _ = std::process::Command::new("kill")
                .args(["-9", &std::process::id().to_string()])
                .status();
            std::process::abort();
        }
    }
}

/// Reaches the crash point `name` (no-op without the `failpoints` feature).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// True when an I/O failure is injected at `name` (from the n-th call on).
#[cfg(feature = "failpoints")]
pub fn fails(name: &str) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("TRAILKEEP_FAILPOINT_ERROR").ok()?;
        let (point, n) = match spec.split_once(':') {
            Some((p, n)) => (p.to_owned(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        Some((point, n))
    });
    match target {
        Some((point, n)) if point == name => COUNT.fetch_add(1, Ordering::SeqCst) + 1 >= *n,
        _ => false,
    }
}

/// True when an I/O failure is injected at `name` (never without the feature).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn fails(_name: &str) -> bool {
    false
}

/// `file.sync_data()`, or an injected failure when the failpoint `name` fails (see
/// [`fails`]): the one place an fdatasync failure is injected.
pub fn sync_data(name: &str, file: &std::fs::File) -> std::io::Result<()> {
    if fails(name) {
        Err(std::io::Error::other(format!(
            "injected fdatasync failure (failpoint {name})"
        )))
    } else {
        file.sync_data()
    }
}
