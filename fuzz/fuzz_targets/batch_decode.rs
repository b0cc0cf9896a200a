//! Fuzz target `batch_decode`: see `trailkeep_fuzz::check_batch_decode` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    trailkeep_fuzz::check_batch_decode(data);
});
