//! Fuzzes `mcm_engine::transport::st2110::convert` through its `fuzz` entry point.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcm_engine::transport::st2110::convert::fuzz(data));
