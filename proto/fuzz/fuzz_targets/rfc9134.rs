//! Fuzzes `mcm_proto::st2110::rfc9134` through its `fuzz` entry point.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcm_proto::st2110::rfc9134::fuzz(data));
