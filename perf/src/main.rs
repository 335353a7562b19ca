//! mcm-perf: measures the mcm engine's data paths with the SDK, as applications use them.
//!
//! `mcm-perf local` starts an engine (or attaches to one), runs N receiver processes and one
//! sender through the SDK, and reports put→get latency percentiles (from the capture timestamp
//! the SDK stamps at put, read against CLOCK_REALTIME at get), frames/s, drops and the CPU time
//! of every process.
//!
//! `mcm-perf compare` runs the same workload through the engine and through GStreamer and
//! FFmpeg, alternating, and reports each side's CPU seconds per stream-second.
//!
//! `mcm-perf pacing` grades a live ST 2110-20 stream (described by an SDP file) against
//! ST 2110-21 from kernel receive timestamps. `mcm-perf st2110` sends an ST 2110-20 stream
//! through an engine to K SDK receivers over multicast on loopback, grading its pacing on the way.
//!
//! `mcm-perf rdma` sends frames from engine A to engine B over an RDMA link and the same frames
//! through a raw libfabric harness with no engine, and reports both side by side.

use std::time::Duration;

use clap::{Parser, Subcommand};

mod agent;
mod compare;
mod engine;
mod local;
mod output;
mod pacing;
mod rdma;
mod report;
mod soak;
mod st2110;

/// mcm-perf: latency histograms and throughput of the mcm engine.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One sender and N receivers in a local multipoint group (shared memory, zero copy).
    Local(local::LocalArgs),
    /// Grade a live ST 2110-20 stream (from its SDP) against ST 2110-21.
    Pacing(pacing::PacingArgs),
    /// One SDK ST 2110-20 sender, K SDK receivers through the engine, pacing graded.
    St2110(st2110::St2110Args),
    /// The same workload through our engine and through GStreamer / FFmpeg, alternating;
    /// CPU per stream-second, frames lost and latency of each side.
    Compare(compare::CompareArgs),
    /// A sender on engine A, a receiver on engine B, an RDMA link between them; beside the
    /// same writes by a raw libfabric harness with no engine.
    Rdma(rdma::RdmaArgs),
    /// Create-connection to first frame across two engines joined by the agent.
    Agent(agent::AgentArgs),
    /// A realistic mix (local fan-out, ST 2110 -20 and -30, clients that join, leave, crash
    /// and hang) for a set time, then checks for leaks and counters that do not add up.
    Soak(soak::SoakArgs),
    /// A receiver process started by `soak` (not for direct use).
    #[command(hide = true)]
    SoakWorker(soak::SoakWorkerArgs),
    /// A receiver process started by `local` (not for direct use).
    #[command(hide = true)]
    RxWorker(local::WorkerArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Local(args) => local::run(&args),
        Command::Pacing(args) => pacing::run(&args),
        Command::St2110(args) => st2110::run(&args),
        Command::Compare(args) => compare::run(&args),
        Command::Rdma(args) => rdma::run(&args),
        Command::Agent(args) => agent::run(&args),
        Command::RxWorker(args) => local::worker(&args),
        Command::Soak(args) => soak::run(&args),
        Command::SoakWorker(args) => soak::worker(&args),
    };
    if let Err(e) = result {
        eprintln!("mcm-perf: {e}");
        std::process::exit(1);
    }
}

/// Parses a duration in milliseconds (for clap).
fn millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("{s:?} is not a number of milliseconds: {e}"))
}
