//! Fuzz target `text_parsers`: see `trailkeep_fuzz::check_text_parsers` for the input layout and the checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    trailkeep_fuzz::check_text_parsers(data);
});
