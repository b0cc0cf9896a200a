//! Fuzz target `recovery`: see `trailkeep_fuzz::check_recovery` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    trailkeep_fuzz::check_recovery(data);
});
