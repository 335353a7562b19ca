//! Fuzzes the engine's configuration: `cores.toml` text through `config::parse` and, when it
//! parses, the validation (`EngineConfig::from_file`). Neither may panic; a refusal names a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcm_engine::config::{EngineConfig, parse};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(&text) {
        Ok(file) => {
            if let Err(e) = EngineConfig::from_file(&file) {
                assert!(!e.key.is_empty(), "a refusal names its key: {e}");
            }
        }
        Err(e) => assert!(!e.message.is_empty(), "a refusal says why"),
    }
});
