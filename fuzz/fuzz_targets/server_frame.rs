//! Fuzz target `server_frame`: see `trailkeep_fuzz::check_server_frame` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    trailkeep_fuzz::check_server_frame(data);
});
