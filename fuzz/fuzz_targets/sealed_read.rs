//! Fuzz target `sealed_read`: see `trailkeep_fuzz::check_sealed_read` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    trailkeep_fuzz::check_sealed_read(data);
});
