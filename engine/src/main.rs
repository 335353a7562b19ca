//! `mcm-engine --config cores.toml`: parse flags, validate, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use mcm_engine::cli::Cli;

fn main() -> ExitCode {
    #[cfg(feature = "rdma")]
    // SAFETY: first thing in main: no other thread exists and libfabric has not been called.
    unsafe {
        mcm_engine::transport::rdma::tune_provider_env();
    }
    let cli = Cli::parse();
    let config = match cli.engine_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mcm-engine: error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("configuration OK: {config:#?}");
        return ExitCode::SUCCESS;
    }
    mcm_engine::runtime::init_logging(cli.log_level.as_deref());
    match mcm_engine::runtime::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcm-engine: error: {e}");
            ExitCode::from(1)
        }
    }
}
