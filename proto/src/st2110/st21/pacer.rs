//! The transmit side: a pacer that hands a send loop its per-poll packet budget.

use super::{Bucket, Timing};

/// What a transmit loop may do now, from [`Pacer::due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Send up to this many packets of the current frame now (1 ..= CMAX), then report how many
    /// went out with [`Pacer::sent`].
    Send(u32),
    /// Packets remain but none may go yet: sleep or poll other sessions until
    /// [`Pacer::next_deadline`].
    Wait,
    /// Every packet of the current frame has been sent: call [`Pacer::frame_done`].
    Done,
    /// No frame in progress: call [`Pacer::start_frame`].
    Idle,
    /// The current frame fell a whole frame period behind its schedule and was abandoned; this
    /// many of its packets were never sent and are counted as skipped. The pacer is now idle.
    Skipped(u32),
}

impl Budget {
    /// Packets that may be sent now (0 unless [`Budget::Send`]).
    pub const fn packets(self) -> u32 {
        match self {
            Self::Send(k) => k,
            _ => 0,
        }
    }
}

/// Counters of a [`Pacer`], read by the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacerStats {
    /// Frames whose every packet was sent.
    pub frames_sent: u64,
    /// Frames abandoned before their last packet (late, or replaced by [`Pacer::start_frame`]).
    pub frames_skipped: u64,
    /// Packets reported sent.
    pub packets_sent: u64,
    /// Packets sent at or after the read time of the packet after them (TPR_{j+1}): the ones
    /// that underflow the receiver's virtual buffer.
    pub packets_late: u64,
    /// Packets of abandoned frames that were never sent.
    pub packets_skipped: u64,
    /// Largest delay of a sent packet past its read time TPR_j, in ns.
    pub max_late_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Sending,
    Done,
}

/// Paces one transmit session along the ST 2110-21 read schedule.
///
/// The loop is: [`start_frame`](Self::start_frame) when a frame is ready, then repeatedly
/// [`due`](Self::due) with the current time, send that many packets, report them with
/// [`sent`](Self::sent), and sleep until [`next_deadline`](Self::next_deadline) when told to
/// wait; on [`Budget::Done`] call [`frame_done`](Self::frame_done) and start the next frame.
///
/// Packet `j` of frame `n` is due at `packet_time(n, j) - lead`, `lead` being
/// [`with_lead`](Self::with_lead)'s packets times TRS. A batch never exceeds the sender type's
/// CMAX, and the pacer keeps its own copy of the network compatibility model (fed with its own
/// sends, at the time of the `due` call that granted them) so that Cinst never exceeds CMAX:
/// a late sender catches up at no more than the model's drain rate, β · NPACKETS / TFRAME.
///
/// Lateness policy: when the next unsent packet is a whole frame period late (`now >=
/// packet_time(n + 1, j)`), the rest of frame `n` is abandoned ([`Budget::Skipped`]) and counted
/// in [`PacerStats`]; the caller starts the next frame it has, typically
/// [`Timing::next_frame_after`]`(now)`. Packets sent after the read time of the next packet
/// are counted as late.
///
/// Times passed in are clamped to be monotonic. Nothing here allocates.
#[derive(Debug, Clone)]
pub struct Pacer {
    timing: Timing,
    lead_ns: u64,
    /// How far past the first due packet a grant reaches: `batch - 1` packet slots.
    batch_ns: u64,
    /// Packets a grant waits for room for in the network model (1: no batching).
    batch: u32,
    /// The Cinst the pacer keeps its own model within: CMAX, or less to leave margin for
    /// jitter between its sends and the wire (see [`Pacer::for_software`]).
    cap: u32,
    state: State,
    frame: u64,
    /// Packets of the current frame sent so far.
    sent: u32,
    /// Latest time passed to `due`.
    now: u64,
    /// Packets granted by the last `due` and not yet reported sent.
    granted: u32,
    bucket: Bucket,
    stats: PacerStats,
    /// Whether a frame a whole period behind is abandoned (the default) or finished late.
    abandon_late: bool,
}

impl Pacer {
    /// A pacer that sends each packet at its read time TPR_j.
    pub fn new(timing: Timing) -> Pacer {
        Self::with_lead(timing, 0)
    }

    /// A pacer that sends each packet `lead` packet slots (`floor(lead · TRS)`) before its read
    /// time, so that wake-up jitter of up to that much does not underflow the receiver's buffer.
    /// The receiver's VRX then peaks at `lead + 1` at most: keep `lead < VRX_FULL`.
    pub fn with_lead(timing: Timing, lead: u32) -> Pacer {
        Pacer {
            timing,
            lead_ns: timing.packet_offset_ns(u64::from(lead)),
            batch_ns: 0,
            batch: 1,
            cap: timing.cmax(),
            state: State::Idle,
            frame: 0,
            sent: 0,
            now: 0,
            granted: 0,
            bucket: Bucket::new(&timing),
            stats: PacerStats::default(),
            abandon_late: true,
        }
    }

    /// Grants packets in batches of up to `batch`: once a packet is due, the grant also takes
    /// the packets due within the next `batch - 1` packet slots (still never more than the
    /// network model lets through). A send loop then makes one system call per `batch`
    /// packets instead of one per packet however often it polls, at the price of sending up
    /// to `batch - 1` slots early: the receiver's VRX peaks at `lead + batch` at most, so keep
    /// `lead + batch <= VRX_FULL` (see [`Pacer::for_software`]). 0 and 1 mean no batching.
    pub fn with_batch(mut self, batch: u32) -> Pacer {
        // + 1 ns: packet times are floored, so slot `j + batch - 1` can lie up to 1 ns more
        // than `(batch - 1) · TRS` after slot `j`.
        self.batch_ns = match batch {
            0 | 1 => 0,
            b => self.timing.packet_offset_ns(u64::from(b - 1)) + 1,
        };
        self.batch = batch.clamp(1, self.cap);
        self
    }

    /// A pacer for a software sender whose wake-ups jitter: as much lead and batching as the
    /// sender type's limits allow, while no packet leaves more than `max_early_ns` before its
    /// read time. With `slots` the packet slots within `max_early_ns`:
    ///
    /// - its own model is kept within CMAX - 2 (at least 1), leaving two packets of margin for
    ///   jitter between its sends and the wire (a receiver's model, anchored at other instants,
    ///   can see a batch one or two drain slots sooner);
    /// - batch = min(that cap, VRX_FULL - 2, slots + 1), at least 1;
    /// - lead = min(VRX_FULL - 1 - batch, slots - (batch - 1)): the receiver's VRX peaks at
    ///   lead + batch, below VRX_FULL, and the last packet of a batch is early by lead + batch - 1
    ///   slots, within `max_early_ns`.
    ///
    /// The lead is what absorbs a late wake-up: a sender that misses its time by less than the
    /// lead stays on schedule, while one that falls behind catches up only at the network
    /// model's drain rate (NPACKETS · 1.1 / TFRAME, about 5 % faster than TRS for narrow
    /// senders), so its later packets stay late for a while.
    pub fn for_software(timing: Timing, max_early_ns: u64) -> Pacer {
        let vrx_full = timing.vrx_full();
        let cap = timing.cmax().saturating_sub(2).max(1);
        let slots = timing.trs.inv().floor_mul(u128::from(max_early_ns));
        let slots = slots.min(u128::from(vrx_full)) as u32; // <= VRX_FULL, a u32
        let batch = cap.min(vrx_full.saturating_sub(2)).min(slots + 1).max(1);
        let lead = vrx_full
            .saturating_sub(1 + batch)
            .min(slots.saturating_sub(batch - 1));
        let mut pacer = Pacer::with_lead(timing, lead);
        pacer.cap = cap;
        pacer.with_batch(batch)
    }

    /// The Cinst the pacer keeps its own network model within (CMAX unless
    /// [`Pacer::for_software`] left a margin).
    pub const fn cinst_cap(&self) -> u32 {
        self.cap
    }

    /// Packets a grant waits for (see [`Pacer::with_batch`]; 1: no batching).
    pub const fn batch(&self) -> u32 {
        self.batch
    }

    /// Never abandons a frame in progress: a sender that fell behind (a starved core) finishes
    /// the frame late, still never faster than the network model allows (so at most CMAX per
    /// batch, catching up at the model's drain rate), and its packets count as late. A receiver
    /// then gets a late but whole frame rather than a truncated one.
    pub fn keep_late_frames(mut self) -> Pacer {
        self.abandon_late = false;
        self
    }

    /// The timing this pacer follows.
    pub const fn timing(&self) -> &Timing {
        &self.timing
    }

    /// The lead in ns (see [`Pacer::with_lead`]).
    pub const fn lead_ns(&self) -> u64 {
        self.lead_ns
    }

    /// Begins frame `n` (its first packet is due at `frame_epoch(n) - lead`). A frame still in
    /// progress is abandoned and its unsent packets counted as skipped.
    pub fn start_frame(&mut self, n: u64) {
        if self.state == State::Sending {
            self.abandon();
        }
        self.state = State::Sending;
        self.frame = n;
        self.sent = 0;
        self.granted = 0;
    }

    /// The budget at `now_ns`: how many packets of the current frame may be sent now. Calling it
    /// again without [`Pacer::sent`] in between returns the same budget (unless time moved on).
    pub fn due(&mut self, now_ns: u64) -> Budget {
        let now = now_ns.max(self.now);
        self.now = now;
        self.granted = 0;
        match self.state {
            State::Idle => return Budget::Idle,
            State::Done => return Budget::Done,
            State::Sending => {}
        }
        let next = u64::from(self.sent);
        if self.abandon_late && now >= self.timing.packet_time(self.frame.saturating_add(1), next) {
            return Budget::Skipped(self.abandon());
        }
        let horizon = now.saturating_add(self.lead_ns);
        let mut scheduled = self.timing.packets_due(self.frame, horizon);
        if scheduled > next && self.batch_ns > 0 {
            scheduled = self
                .timing
                .packets_due(self.frame, horizon.saturating_add(self.batch_ns));
        }
        let due = scheduled
            .min(u64::from(self.timing.packets()))
            .saturating_sub(next);
        let room = self.bucket.room(now, self.cap);
        if room < due.min(u64::from(self.batch)) {
            // A late sender catching up waits for room for a whole batch rather than
            // trickling out one packet per drain slot.
            return Budget::Wait;
        }
        match due.min(room) {
            0 => Budget::Wait,
            k => {
                self.granted = k as u32; // k <= CMAX, a u32
                Budget::Send(self.granted)
            }
        }
    }

    /// Reports `k` packets sent at the time of the last [`Pacer::due`] call; `k` is clamped to
    /// what that call granted and has not been reported yet.
    pub fn sent(&mut self, k: u32) {
        self.sent_at(k, self.now);
    }

    /// Reports `k` packets sent at `at_ns` (the time of the send call, clamped to be no earlier
    /// than the last [`Pacer::due`]). The network model and the lateness count take them as
    /// sent then: a sender held up between asking and sending (preempted) has its next batch
    /// wait for the model to drain from when these really left, rather than following them
    /// at once and exceeding CMAX on the wire.
    pub fn sent_at(&mut self, k: u32, at_ns: u64) {
        let k = k.min(self.granted);
        if k == 0 {
            return;
        }
        self.now = self.now.max(at_ns);
        self.granted -= k;
        let (first, end) = (u64::from(self.sent), u64::from(self.sent + k));
        let read = self.timing.packets_due(self.frame, self.now);
        self.stats.packets_late += end.min(read.saturating_sub(1)).saturating_sub(first);
        let late = self
            .now
            .saturating_sub(self.timing.packet_time(self.frame, first));
        self.stats.max_late_ns = self.stats.max_late_ns.max(late);
        self.bucket.arrive(self.now, u64::from(k));
        self.sent += k;
        self.stats.packets_sent += u64::from(k);
        if self.sent == self.timing.packets() {
            self.state = State::Done;
            self.granted = 0;
            self.stats.frames_sent += 1;
        }
    }

    /// When the next packet may be sent: the later of its due time and the time the network
    /// model lets one more packet through. `None` when no frame is in progress or every packet
    /// of the current frame has been sent. May be in the past when a packet is due already.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.state != State::Sending {
            return None;
        }
        let scheduled = self.timing.packet_time(self.frame, u64::from(self.sent));
        let scheduled = scheduled.saturating_sub(self.lead_ns);
        let want = self.batch.min(self.timing.packets() - self.sent);
        Some(scheduled.max(self.bucket.free_at(self.cap, want)))
    }

    /// Ends the current frame: after [`Budget::Done`] this only makes the pacer idle; before it,
    /// the unsent packets are counted as skipped.
    pub fn frame_done(&mut self) {
        if self.state == State::Sending {
            self.abandon();
        }
        self.state = State::Idle;
        self.granted = 0;
    }

    /// The frame in progress (or just completed), if any.
    pub fn frame(&self) -> Option<u64> {
        (self.state != State::Idle).then_some(self.frame)
    }

    /// Index of the next packet of the current frame to send (its count of packets sent).
    pub const fn next_packet(&self) -> u32 {
        self.sent
    }

    /// The counters.
    pub const fn stats(&self) -> PacerStats {
        self.stats
    }

    /// Drops the rest of the current frame; returns how many packets were never sent.
    fn abandon(&mut self) -> u32 {
        let skipped = self.timing.packets() - self.sent;
        self.stats.frames_skipped += 1;
        self.stats.packets_skipped += u64::from(skipped);
        self.state = State::Idle;
        self.granted = 0;
        skipped
    }
}
