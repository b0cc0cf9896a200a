//! Progress on a terminal for long operations (bulk append, verify, replay, tier
//! upload): drawn on stderr only when stderr is a terminal, hidden when piped.

use std::io::IsTerminal;
use std::time::Duration;

/// How often a spinner without progress events redraws.
const SPIN_MS: u64 = 120;

fn on_terminal() -> bool {
    std::io::stderr().is_terminal()
}

fn styled(bar: indicatif::ProgressBar, template: &str) -> indicatif::ProgressBar {
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Bytes read from an input: a bar for a file of known size, a counter for a pipe (not
/// when the input is a terminal someone types into).
pub(crate) fn bytes_bar(len: Option<u64>) -> indicatif::ProgressBar {
    if !on_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    match len {
        Some(len) => styled(
            indicatif::ProgressBar::new(len),
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None if !std::io::stdin().is_terminal() => styled(
            indicatif::ProgressBar::no_length(),
            "{spinner} {bytes} read, {bytes_per_sec}",
        ),
        None => indicatif::ProgressBar::hidden(),
    }
}

/// Records of a known count, with a message (`verifying t`).
pub(crate) fn records_bar(len: u64, message: String) -> indicatif::ProgressBar {
    if !on_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = styled(
        indicatif::ProgressBar::new(len),
        "{msg} {bar:40} {pos}/{len} records {per_sec} eta {eta}",
    );
    bar.set_message(message);
    bar
}

/// A spinner with elapsed time for work that reports no progress (`uploading`).
pub(crate) fn spinner(message: String) -> indicatif::ProgressBar {
    if !on_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = styled(indicatif::ProgressBar::new_spinner(), "{spinner} {msg} {elapsed}");
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(SPIN_MS));
    bar
}
