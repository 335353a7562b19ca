//! Kernel network sockets shared by the engine (its kernel UDP packet I/O backend,
//! `mcm_engine::io::udp`) and `mcm-perf` (its pacing grader), so both read datagrams with the
//! same code: non-blocking, `recvmmsg` with GRO and receive timestamps, multicast joins.

pub mod udp;
