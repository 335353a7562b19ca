//! ST 2110 sessions on the lcores: the kernel UDP backend, tx and rx ports, and the pixel-format
//! conversion at the SDK edge. Wire formats, SDP and -21 timing live in [`mcm_proto::st2110`].

pub mod convert;
pub mod udp;
