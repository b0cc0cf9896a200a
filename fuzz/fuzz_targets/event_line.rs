//! Fuzz target `event_line`: see `trailkeep_fuzz::check_event_line` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    trailkeep_fuzz::check_event_line(data);
});
