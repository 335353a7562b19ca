use proptest::prelude::*;

use super::*;

const NOW: u64 = 1_700_000_000 * 1_000_000_000;

fn rate(num: u32, den: u32) -> FrameRate {
    FrameRate::new(num, den).unwrap()
}

fn p1080_5994(sender: SenderType) -> Timing {
    Timing::new(rate(60000, 1001), 1080, false, 4320, sender)
}

fn p720_50() -> Timing {
    Timing::new(rate(50, 1), 720, false, 1920, SenderType::Narrow)
}

fn p2160_5994() -> Timing {
    Timing::new(rate(60000, 1001), 2160, false, 17280, SenderType::Narrow)
}

/// 1080p50 with 1920 packets: TRS = 10 us exactly, TDRAIN = 9469.69... ns, TROFFSET 764444 ns.
fn small() -> Timing {
    Timing::new(rate(50, 1), 1080, false, 1920, SenderType::Narrow)
}

/// `floor(j · TFRAME · RACTIVE / N)` from the standard's formula, in exact integers.
fn trs_offset(rate: (u128, u128), ractive: (u128, u128), n: u128, j: u128) -> u64 {
    (j * rate.1 * 1_000_000_000 * ractive.0 / (rate.0 * ractive.1 * n)) as u64
}

#[test]
fn sender_types_round_trip() {
    for (name, s) in SenderType::ALL {
        assert_eq!(SenderType::parse(name), Some(s));
        assert_eq!(s.as_str(), name);
        assert_eq!(s.to_string(), name);
    }
    for bad in ["", "2110TP", "2110tpn", "2110TPN ", "2110TPWL", "TPN"] {
        assert_eq!(SenderType::parse(bad), None, "{bad:?}");
    }
    assert!(SenderType::NarrowLinear.is_linear());
    assert!(!SenderType::Narrow.is_linear() && !SenderType::Wide.is_linear());
}

#[test]
fn timing_1080p5994_matches_the_formulas() {
    let t = p1080_5994(SenderType::Narrow);
    assert_eq!(t.packets(), 4320);
    assert_eq!(t.ractive(), (1080, 1125));
    assert_eq!(t.troffset_fraction(), (43, 1125));
    assert!((t.tframe_ns() - 16_683_333.333).abs() < 1e-3);
    assert!((t.trs_ns() - 3_707.407_407).abs() < 1e-6);
    assert!((t.tdrain_ns() - 16_683_333.333 / (1.1 * 4320.0)).abs() < 1e-3);
    // TROFFSET = 43/1125 · 1001/60000 s = 637674.07 us.
    assert_eq!(t.troffset_ns(), 637_674);
    assert_eq!(t.packet_offset_ns(1), 3_707);
    assert_eq!(t.packet_offset_ns(4320), 16_016_000); // TFRAME · RACTIVE, exactly
    assert_eq!((t.cmax_narrow(), t.cmax_wide()), (6, 16));
    assert_eq!((t.vrx_full_narrow(), t.vrx_full_wide()), (9, 863));
    assert_eq!((t.cmax(), t.vrx_full()), (6, 9));
    // ceil(637674.07 ns · 90 kHz) + 1 = ceil(57.39) + 1.
    assert_eq!(t.rtp_offset_max(), 59);
    let w = p1080_5994(SenderType::Wide);
    assert_eq!((w.cmax(), w.vrx_full()), (16, 863));
    assert_eq!(w.ractive(), (1080, 1125));
}

#[test]
fn timing_720p50_matches_the_formulas() {
    let t = p720_50();
    assert_eq!(t.ractive(), (720, 750));
    assert_eq!(t.troffset_fraction(), (28, 750));
    assert_eq!(t.packet_offset_ns(1), 10_000); // 20 ms · 0.96 / 1920
    assert_eq!(t.packet_offset_ns(1920), 19_200_000);
    assert_eq!(t.troffset_ns(), 746_666); // 28/750 · 20 ms
    assert_eq!((t.cmax_narrow(), t.cmax_wide()), (4, 16));
    assert_eq!((t.vrx_full_narrow(), t.vrx_full_wide()), (8, 720));
    assert_eq!(t.rtp_offset_max(), 69); // ceil(67.2) + 1
    assert_eq!(t.frame_epoch(0), 746_666);
    assert_eq!(t.frame_epoch(50), 1_000_000_000 + 746_666);
    assert_eq!(t.packet_time(50, 1919), 1_000_746_666 + 19_190_000);
    assert_eq!(t.rtp_timestamp(1), 1800);
}

#[test]
fn timing_2160p5994_matches_the_formulas() {
    let t = p2160_5994();
    assert_eq!(t.ractive(), (1080, 1125));
    assert_eq!(t.troffset_ns(), 637_674);
    assert!((t.trs_ns() - 926.851_851).abs() < 1e-5);
    assert_eq!(t.packet_offset_ns(1), 926);
    assert_eq!(t.packet_offset_ns(17280), 16_016_000);
    // 17280 / (43200 · 0.96 · 1001/60000) = 24.98; / (21600 · ...) = 47.95; 38.36; 3452.5.
    assert_eq!((t.cmax_narrow(), t.cmax_wide()), (24, 47));
    assert_eq!((t.vrx_full_narrow(), t.vrx_full_wide()), (38, 3452));
}

#[test]
fn packet_times_are_exact_for_every_packet() {
    for (t, rate) in [
        (p1080_5994(SenderType::Narrow), (60000, 1001)),
        (p720_50(), (50, 1)),
        (p2160_5994(), (60000, 1001)),
    ] {
        let n_packets = u128::from(t.packets());
        let (rn, rd) = t.ractive();
        for n in [0, 1, 7, t.frame_at(NOW), t.frame_at(NOW) + 1] {
            let start = (u128::from(n) * rate.1 * 1_000_000_000 / rate.0) as u64;
            assert_eq!(t.frame_start_ns(n), start);
            assert_eq!(t.frame_epoch(n), start + t.troffset_ns());
            for j in 0..t.packets() as u128 {
                let off = trs_offset(rate, (rn.into(), rd.into()), n_packets, j);
                assert_eq!(t.packet_time(n, j as u64), start + t.troffset_ns() + off);
            }
        }
    }
}

#[test]
fn epochs_do_not_drift() {
    let t = p1080_5994(SenderType::Narrow);
    // 60000 frames take exactly 1001 s.
    assert_eq!(t.frame_epoch(60_000), 1001 * 1_000_000_000 + 637_674);
    assert_eq!(t.frame_epoch(1), 16_683_333 + 637_674);
    let n = t.frame_at(NOW);
    assert!(t.frame_start_ns(n) <= NOW && NOW < t.frame_start_ns(n + 1));
}

#[test]
fn rtp_timestamps_are_the_sampling_instants() {
    let t = p1080_5994(SenderType::Narrow);
    assert_eq!(t.rtp_timestamp(0), 0);
    assert_eq!(t.rtp_timestamp(1), 1501); // 1501.5 ticks per frame
    assert_eq!(t.rtp_timestamp(2), 3003);
    for n in [t.frame_at(NOW), u64::MAX / 5000, u64::MAX] {
        let exact = (u128::from(n) * 3003 / 2) as u32;
        assert_eq!(t.rtp_timestamp(n), exact, "frame {n}");
    }
    // The RTP time of frame n's epoch equals floor(t · 90 kHz) of its start.
    let n = t.frame_at(NOW);
    let start = t.frame_start_ns(n);
    let direct = (u128::from(start) * 90_000 / 1_000_000_000) as u32;
    assert!(t.rtp_timestamp(n).wrapping_sub(direct) <= 1);
}

#[test]
fn interlaced_formats_count_fields() {
    // 1080i59.94: exactframerate 30000/1001, fields of 16.683 ms.
    let t = Timing::new(rate(30000, 1001), 1080, true, 2160, SenderType::Narrow);
    assert!((t.tframe_ns() - 16_683_333.333).abs() < 1e-3);
    assert_eq!(t.ractive(), (1080, 1125));
    // 22/1125 of the 33.367 ms frame = 652503.7 ns.
    assert_eq!(t.troffset_ns(), 652_503);
    assert_eq!(t.rtp_timestamp(1), 1501);
    assert_eq!(t.packet_offset_ns(2160), 16_016_000);
    // 480i59.94 and 576i50.
    let t = Timing::new(rate(30000, 1001), 486, true, 1000, SenderType::Narrow);
    assert_eq!(t.ractive(), (487, 525));
    assert_eq!(t.troffset_ns(), 1_271_111); // 20/525 · 33.367 ms
    let t = Timing::new(rate(25, 1), 576, true, 1000, SenderType::Narrow);
    assert_eq!(t.ractive(), (576, 625));
    assert_eq!(t.troffset_ns(), 1_664_000); // 26/625 · 40 ms
    assert_eq!(t.frame_epoch(3), 60_000_000 + 1_664_000);
}

#[test]
fn linear_senders_use_the_whole_frame() {
    let t = p1080_5994(SenderType::NarrowLinear);
    assert_eq!(t.ractive(), (1, 1));
    assert_eq!(t.packet_offset_ns(4320), 16_683_333);
    assert_eq!(t.packet_offset_ns(1), 3_861); // 3861.9
    assert_eq!(t.troffset_ns(), 637_674);
    assert_eq!(t.cmax_narrow(), 5); // 4320 / (43200 · 1 · 0.016683) = 5.99
    assert_eq!(t.cmax(), 5);
}

#[test]
fn small_formats_use_the_minimum_limits() {
    let t = Timing::new(rate(24, 1), 480, false, 10, SenderType::Wide);
    assert_eq!((t.cmax_narrow(), t.cmax_wide()), (4, 16));
    assert_eq!((t.vrx_full_narrow(), t.vrx_full_wide()), (8, 720));
    assert_eq!(t.troffset_fraction(), (28, 750));
    assert_eq!(t.ractive(), (720, 750));
}

#[test]
fn packet_counts_are_clamped() {
    assert_eq!(
        Timing::new(rate(50, 1), 1080, false, 0, SenderType::Narrow).packets(),
        1
    );
    let t = Timing::new(rate(50, 1), 1080, false, u32::MAX, SenderType::Narrow);
    assert_eq!(t.packets(), MAX_PACKETS);
}

#[test]
fn extreme_values_saturate_without_panicking() {
    let t = p1080_5994(SenderType::Narrow);
    assert_eq!(t.frame_epoch(u64::MAX), u64::MAX);
    assert_eq!(t.packet_time(u64::MAX, u64::MAX), u64::MAX);
    let far = 1 << 50;
    assert_eq!(t.packets_due(0, t.packet_time(0, far)), far + 1);
    let frames = u128::from(u64::MAX) * 60_000 / 1_001_000_000_000;
    assert_eq!(u128::from(t.frame_at(u64::MAX)), frames);
    // The slowest rate accepted, interlaced: fields of 500 s; the field after the last one
    // that starts before u64::MAX ns saturates.
    let slow = Timing::new(rate(1, 1000), 1080, true, MAX_PACKETS, SenderType::Wide);
    let last = slow.frame_at(u64::MAX);
    assert_eq!(u128::from(last), u128::from(u64::MAX) / 500_000_000_000);
    assert_eq!(
        u128::from(slow.frame_start_ns(last)),
        u128::from(last) * 500_000_000_000
    );
    assert_eq!(slow.next_frame_after(u64::MAX), last + 1);
    assert_eq!(slow.frame_epoch(last + 1), u64::MAX);
    // The fastest rate accepted, with the most packets a frame may have.
    let fast = Timing::new(rate(1000, 1), 0, false, MAX_PACKETS, SenderType::Narrow);
    let exact = u128::from(u64::MAX) * 720_000_000 / (750u128 << 24);
    assert_eq!(u128::from(fast.packet_offset_ns(u64::MAX)), exact);
    assert_eq!(fast.cmax_wide(), 776_722); // 2^24 / (21600 · 0.001 s)
    assert!(fast.frame_at(u64::MAX) > u64::MAX / 1_000_001);
}

#[test]
fn frames_are_found_from_times() {
    let t = p1080_5994(SenderType::Narrow);
    let n = t.frame_at(NOW);
    assert_eq!(t.frame_at(t.frame_start_ns(n)), n);
    assert_eq!(t.frame_at(t.frame_start_ns(n) - 1), n - 1);
    assert_eq!(t.next_frame_after(t.frame_start_ns(n)), n);
    assert_eq!(t.next_frame_after(t.frame_epoch(n)), n);
    assert_eq!(t.next_frame_after(t.frame_epoch(n) + 1), n + 1);
    assert_eq!(t.next_frame_after(0), 0);
}

#[test]
fn packets_due_counts_read_times() {
    let t = small();
    assert_eq!(t.packets_due(0, 764_443), 0);
    assert_eq!(t.packets_due(0, 764_444), 1);
    assert_eq!(t.packets_due(0, 764_444 + 9_999), 1);
    assert_eq!(t.packets_due(0, 764_444 + 10_000), 2);
    assert_eq!(t.packets_due(0, 764_444 + 19_200_000), 1921); // past the frame: not capped
}

proptest! {
    #[test]
    fn packets_due_inverts_packet_time(j in 0u64..17_280, n in 0u64..1 << 40) {
        let t = p2160_5994();
        let at = t.packet_time(n, j);
        prop_assert_eq!(t.packets_due(n, at), j + 1);
        prop_assert_eq!(t.packets_due(n, at - 1), j);
    }
}

// ---- the network compatibility model ----

#[test]
fn bucket_known_answers() {
    let t = small();
    let mut b = Bucket::new(&t);
    let t0 = 1_000_000;
    assert_eq!(b.arrive(t0, 1), 0);
    assert_eq!(b.arrive(t0, 1), 1);
    // The first drain slot is at t0 + 9469.69: 9469 ns is before it, 9470 after.
    assert_eq!(b.level_at(t0 + 9_469), 2);
    assert_eq!(b.level_at(t0 + 9_470), 1);
    assert_eq!(b.level_at(t0 + 18_939), 1); // slot 2 at 18939.39
    assert_eq!(b.level_at(t0 + 18_940), 0);
    assert_eq!(b.arrive(t0 + 9_470, 1), 1); // 2 - 1 drained + 1
    // A slot that finds the bucket empty is lost: a burst after a pause starts from zero.
    assert_eq!(b.arrive(t0 + 100_000, 5), 4);
    assert_eq!(b.room(t0 + 100_000, 4), 0);
    assert_eq!(b.room(t0 + 100_000, 6), 2);
}

#[test]
fn bucket_free_at_is_the_next_useful_slot() {
    let t = small();
    let mut b = Bucket::new(&t);
    assert_eq!(b.arrive(0, 7), 6);
    assert_eq!(b.room(0, 6), 0);
    assert_eq!(b.free_at(6, 1), 9_470); // ceil(9469.69)
    assert_eq!(b.room(9_469, 6), 0);
    assert_eq!(b.room(9_470, 6), 1);
    assert_eq!(b.free_at(4, 1), 28_410); // three slots: ceil(28409.09)
    assert_eq!(b.free_at(7, 1), 0);
    // Room for three under CMAX 6: the level must fall from 7 to 4, three slots.
    assert_eq!(b.free_at(6, 3), 28_410);
    assert_eq!(b.room(28_409, 6), 2);
    assert_eq!(b.room(28_410, 6), 3);
    assert_eq!(
        b.free_at(6, 0),
        b.free_at(6, 1),
        "wanting none waits for one"
    );
}

/// A late sender with batches waits for room for a whole batch instead of trickling one
/// packet per drain slot.
#[test]
fn a_late_batching_pacer_waits_for_room_for_a_whole_batch() {
    let t = p1080_5994(SenderType::Narrow);
    let mut pacer = Pacer::new(t).with_batch(4);
    let n = t.next_frame_after(NOW);
    pacer.start_frame(n);
    let now = t.frame_epoch(n) + 100_000; // 27 packets due
    assert_eq!(pacer.due(now), Budget::Send(6));
    pacer.sent(6);
    // Cinst 5: room for 1, not 4.
    assert_eq!(pacer.due(now), Budget::Wait);
    let at = pacer.next_deadline().unwrap();
    assert_eq!(at, now + 10_533); // three drain slots: ceil(3 · 3510.7...)
    assert_eq!(pacer.due(at - 1), Budget::Wait);
    assert_eq!(pacer.due(at), Budget::Send(4));
}

// ---- the grader ----

/// Feeds `arrivals` (ns after frame n's TVD) as one frame with the marker on the last one.
fn grade(t: Timing, n: u64, arrivals: &[i64]) -> FrameGrade {
    let mut g = Grader::new(t);
    let tvd = t.frame_epoch(n) as i64;
    let ts = t.rtp_timestamp(n);
    for (k, a) in arrivals.iter().enumerate() {
        let closed = g.on_packet((tvd + a) as u64, ts, k + 1 == arrivals.len());
        assert_eq!(closed.is_some(), k + 1 == arrivals.len());
        if let Some(grade) = closed {
            return grade;
        }
    }
    unreachable!("the marker closes the frame")
}

#[test]
fn grader_known_answers() {
    let t = small();
    let n = 1000;
    let g = grade(t, n, &[0, 0, 0, 30_000, 30_000]);
    // Cinst 0, 1, 2, then 3 slots drain the bucket: 0, 1. VRX: 1-1, 2-1, 3-1, 4-4, 5-4.
    assert_eq!((g.cinst_peak, g.vrx_peak, g.vrx_min), (2, 2, 0));
    assert_eq!(g.packets, 5);
    assert_eq!(g.frame, n);
    assert_eq!(g.first_packet_offset_ns, 764_444);
    assert_eq!(g.rtp_offset, 0);
    assert_eq!(g.rtp_timestamp, t.rtp_timestamp(n));
    assert_eq!((g.class, g.violation), (Compliance::Narrow, None));

    // Packet 2 may arrive up to just before TPR_3 = TVD + 30 us.
    let g = grade(t, n, &[0, 10_000, 29_999]);
    assert_eq!((g.vrx_min, g.class), (0, Compliance::Narrow));
    let g = grade(t, n, &[0, 10_000, 30_000]);
    assert_eq!((g.vrx_min, g.class), (-1, Compliance::Fail));
    assert_eq!(g.violation, Some(Violation::VrxUnderflow));

    // Early packets fill the buffer: 5 packets before TPR_0 read as VRX 5.
    let g = grade(t, n, &[-50_000, -40_000, -30_000, -20_000, -10_000]);
    assert_eq!((g.vrx_peak, g.vrx_min, g.cinst_peak), (5, 1, 0));
    assert_eq!(g.first_packet_offset_ns, 764_444 - 50_000);
    assert_eq!(g.class, Compliance::Narrow);
    // Nine early packets exceed the narrow VRX_FULL of 8.
    let early: Vec<i64> = (0..9).map(|k| -90_000 + 10_000 * k).collect();
    let g = grade(t, n, &early);
    assert_eq!(
        (g.vrx_peak, g.cinst_peak, g.class),
        (9, 0, Compliance::Wide)
    );
}

#[test]
fn grader_checks_the_first_packet_and_the_rtp_offset() {
    let t = small();
    let n = 77;
    let g = grade(t, n, &[0]);
    assert_eq!(
        (g.first_packet_offset_ns, g.class),
        (764_444, Compliance::Narrow)
    );
    let g = grade(t, n, &[1]);
    assert_eq!(g.violation, Some(Violation::FirstPacketLate));
    assert_eq!(g.class, Compliance::Fail);

    let tvd = t.frame_epoch(n);
    let expected = t.rtp_timestamp(n);
    for (delta, ok) in [
        (-2i32, false),
        (-1, true),
        (0, true),
        (70, true),
        (71, false),
    ] {
        let mut grader = Grader::new(t);
        let ts = expected.wrapping_add_signed(delta);
        let g = grader.on_packet(tvd, ts, true).unwrap();
        assert_eq!(g.rtp_offset, i64::from(delta));
        assert_eq!(g.violation.is_none(), ok, "offset {delta}");
        if !ok {
            assert_eq!(g.violation, Some(Violation::RtpOffset));
        }
    }
}

/// Arrivals of frames `n0..n0 + frames` of `t`, packet j at `tvd + at(j)`.
fn grade_stream(t: Timing, frames: u64, at: impl Fn(&Timing, u64, u64) -> u64) -> Grader {
    let mut g = Grader::new(t);
    let n0 = t.frame_at(NOW);
    let last = u64::from(t.packets()) - 1;
    for n in n0..n0 + frames {
        for j in 0..=last {
            if let Some(grade) = g.on_packet(at(&t, n, j), t.rtp_timestamp(n), j == last) {
                assert_eq!(grade.frame, n);
                assert_eq!(grade.packets, t.packets());
            }
        }
    }
    g
}

#[test]
fn a_stream_paced_at_trs_is_narrow() {
    for t in [
        p1080_5994(SenderType::Narrow),
        p720_50(),
        p2160_5994(),
        p1080_5994(SenderType::NarrowLinear),
    ] {
        let g = grade_stream(t, 3, |t, n, j| t.packet_time(n, j));
        let s = g.summary();
        assert_eq!(
            (s.frames, s.narrow, s.packets),
            (3, 3, 3 * u64::from(t.packets()))
        );
        assert_eq!((s.cinst_peak, s.vrx_peak, s.vrx_min), (0, 0, 0));
        assert_eq!(s.first_packet_offset_max_ns, t.troffset_ns());
        assert_eq!((s.rtp_offset_min, s.rtp_offset_max), (0, 0));
        assert_eq!(s.class(), Some(Compliance::Narrow));
    }
}

#[test]
fn bursts_of_16_are_wide() {
    let t = p1080_5994(SenderType::Wide);
    let g = grade_stream(t, 2, |t, n, j| t.packet_time(n, j - j % 16));
    let s = g.summary();
    assert_eq!((s.frames, s.wide), (2, 2));
    assert_eq!((s.cinst_peak, s.vrx_peak, s.vrx_min), (15, 15, 0));
    assert_eq!(s.class(), Some(Compliance::Wide));
}

#[test]
fn a_frame_in_one_burst_fails() {
    let t = p1080_5994(SenderType::Wide);
    let mut g = grade_stream(t, 1, |t, n, _| t.frame_epoch(n));
    let s = *g.summary();
    assert_eq!((s.frames, s.failed), (1, 1));
    assert_eq!((s.cinst_peak, s.vrx_peak), (4319, 4319));
    assert_eq!(s.class(), Some(Compliance::Fail));
    // The violation names the first rule broken.
    let n = t.frame_at(NOW) + 5;
    for j in 0..4320 {
        if let Some(grade) = g.on_packet(t.frame_epoch(n), t.rtp_timestamp(n), j == 4319) {
            assert_eq!(grade.violation, Some(Violation::VrxOverflow));
        }
    }
    // A burst of 17 within the wide VRX but beyond the wide CMAX.
    let g = grade(t, 9, &[0; 18]);
    assert_eq!(
        (g.cinst_peak, g.violation),
        (17, Some(Violation::CinstOverflow))
    );
}

#[test]
fn frames_close_on_a_timestamp_change() {
    let t = small();
    let mut g = Grader::new(t);
    let tvd = t.frame_epoch(10);
    let (a, b, c) = (
        t.rtp_timestamp(10),
        t.rtp_timestamp(11),
        t.rtp_timestamp(12),
    );
    assert_eq!(g.on_packet(tvd, a, false), None);
    assert_eq!(g.on_packet(tvd + 10_000, a, false), None);
    // Lost marker: the next frame's first packet closes frame 10.
    let closed = g.on_packet(t.frame_epoch(11), b, false).unwrap();
    assert_eq!((closed.rtp_timestamp, closed.packets), (a, 2));
    // A marker packet that also changes the timestamp: frame 11 now, its own grade next.
    let closed = g.on_packet(t.frame_epoch(12), c, true).unwrap();
    assert_eq!(
        (closed.rtp_timestamp, closed.frame, closed.packets),
        (b, 11, 1)
    );
    assert_eq!(g.summary().frames, 2);
    // A straggler of frame 12 closes it and is counted as stray.
    let closed = g.on_packet(t.frame_epoch(12) + 5, c, false).unwrap();
    assert_eq!((closed.rtp_timestamp, closed.packets), (c, 1));
    assert_eq!(g.summary().stray_packets, 1);
    assert_eq!(g.finish(), None);
    assert_eq!(g.on_packet(t.frame_epoch(12) + 6, c, true), None);
    assert_eq!(g.summary().stray_packets, 2);
    assert_eq!(g.summary().frames, 3);
    // A frame in progress is graded by finish.
    assert_eq!(
        g.on_packet(t.frame_epoch(13), t.rtp_timestamp(13), false),
        None
    );
    assert_eq!(g.finish().unwrap().packets, 1);
    assert_eq!(g.finish(), None);
}

#[test]
fn arrivals_going_backwards_are_clamped() {
    let t = small();
    let mut g = Grader::new(t);
    let tvd = t.frame_epoch(3);
    let ts = t.rtp_timestamp(3);
    assert_eq!(g.on_packet(tvd + 20_000, ts, false), None);
    let grade = g.on_packet(tvd, ts, true).unwrap();
    // Both count as arriving at TVD + 20 us: VRX 1 - 3, 2 - 3.
    assert_eq!((grade.vrx_min, grade.vrx_peak), (-2, -1));
    assert_eq!(grade.cinst_peak, 1);
}

#[test]
fn empty_summary_has_no_class() {
    let g = Grader::new(small());
    assert_eq!(g.summary().class(), None);
    assert_eq!(*g.summary(), GradeSummary::default());
    assert_eq!(g.timing(), &small());
}

// ---- the pacer ----

/// Observations of a pacer run.
#[derive(Debug, Default)]
struct Run {
    max_batch: u32,
    budgets: u64,
    skipped: u64,
}

/// Runs a pacer over `frames` frames starting at the first frame after `start`, polling at the
/// times `poll` picks from (now, next deadline, whether the pacer said to wait), and grades its
/// output with no network delay.
fn drive(
    pacer: &mut Pacer,
    grader: &mut Grader,
    start: u64,
    frames: u64,
    mut poll: impl FnMut(u64, Option<u64>, bool) -> u64,
) -> Run {
    let t = *pacer.timing();
    let last = t.packets() - 1;
    let mut run = Run::default();
    let mut now = start;
    let mut frame = t.next_frame_after(start);
    let end = frame + frames;
    pacer.start_frame(frame);
    while frame < end {
        let budget = pacer.due(now);
        match budget {
            Budget::Send(k) => {
                run.max_batch = run.max_batch.max(k);
                run.budgets += 1;
                let first = pacer.next_packet();
                pacer.sent(k);
                for j in first..first + k {
                    grader.on_packet(now, t.rtp_timestamp(frame), j == last);
                }
                assert_eq!(pacer.next_packet(), first + k);
            }
            Budget::Wait => {}
            Budget::Done => {
                pacer.frame_done();
                frame += 1;
            }
            Budget::Skipped(k) => {
                run.skipped += u64::from(k);
                frame = (frame + 1).max(t.next_frame_after(now));
            }
            Budget::Idle => unreachable!("the loop always has a frame started"),
        }
        if matches!(budget, Budget::Done | Budget::Skipped(_)) && frame < end {
            pacer.start_frame(frame);
        }
        now = poll(now, pacer.next_deadline(), budget == Budget::Wait).max(now);
    }
    assert_eq!(pacer.frame(), None);
    grader.finish();
    run
}

#[test]
fn an_exact_clock_sends_each_packet_at_its_read_time() {
    for t in [
        p1080_5994(SenderType::Narrow),
        p720_50(),
        p2160_5994(),
        p1080_5994(SenderType::NarrowLinear),
    ] {
        let mut pacer = Pacer::new(t);
        let n = t.next_frame_after(NOW);
        pacer.start_frame(n);
        assert_eq!(pacer.frame(), Some(n));
        for j in 0..u64::from(t.packets()) {
            let deadline = pacer.next_deadline().unwrap();
            assert_eq!(deadline, t.packet_time(n, j));
            assert_eq!(pacer.due(deadline - 1), Budget::Wait);
            assert_eq!(pacer.due(deadline), Budget::Send(1));
            pacer.sent(1);
        }
        assert_eq!(
            pacer.due(t.packet_time(n, u64::from(t.packets()))),
            Budget::Done
        );
        assert_eq!(pacer.next_deadline(), None);
        pacer.frame_done();
        assert_eq!(pacer.due(NOW), Budget::Idle);
        assert_eq!(pacer.frame(), None);
        let s = pacer.stats();
        assert_eq!(
            (s.frames_sent, s.packets_sent, s.packets_late),
            (1, u64::from(t.packets()), 0)
        );
        assert_eq!(
            (s.frames_skipped, s.packets_skipped, s.max_late_ns),
            (0, 0, 0)
        );

        // The same, graded: narrow with no queueing at all.
        let mut pacer = Pacer::new(t);
        let mut grader = Grader::new(t);
        let run = drive(&mut pacer, &mut grader, NOW, 3, |now, d, _| {
            d.unwrap_or(now)
        });
        let s = grader.summary();
        assert_eq!(
            (run.max_batch, run.budgets),
            (1, 3 * u64::from(t.packets()))
        );
        assert_eq!(
            (s.frames, s.narrow, s.cinst_peak, s.vrx_peak, s.vrx_min),
            (3, 3, 0, 0, 0)
        );
    }
}

#[test]
fn a_lead_sends_early_and_fills_the_receiver_buffer() {
    let t = p1080_5994(SenderType::Narrow);
    let mut pacer = Pacer::with_lead(t, 4);
    assert_eq!(pacer.lead_ns(), 14_829); // floor(4 · 3707.4)
    let mut grader = Grader::new(t);
    drive(&mut pacer, &mut grader, NOW, 2, |now, d, _| {
        d.unwrap_or(now)
    });
    let s = grader.summary();
    assert_eq!((s.frames, s.narrow), (2, 2));
    assert_eq!((s.vrx_peak, s.vrx_min, s.cinst_peak), (4, 1, 0));
    assert_eq!(s.first_packet_offset_max_ns, t.troffset_ns() - 14_829);
}

#[test]
fn a_software_pacer_takes_the_lead_and_batch_the_limits_allow() {
    let check = |t: Timing, max_early_ns: u64, lead: u32, batch: u32| {
        let p = Pacer::for_software(t, max_early_ns);
        assert_eq!(
            (p.lead_ns(), p.batch()),
            (t.packet_offset_ns(u64::from(lead)), batch)
        );
        assert!(lead + batch < t.vrx_full());
        assert_eq!(p.cinst_cap(), t.cmax() - 2);
        assert!(batch <= p.cinst_cap());
        assert!(
            t.packet_offset_ns(u64::from(lead + batch - 1))
                <= max_early_ns.max(t.packet_offset_ns(0))
        );
    };
    // 1080p59.94 narrow (CMAX 6, VRX_FULL 9, TRS 3707.4 ns): VRX_FULL bounds the lead.
    check(p1080_5994(SenderType::Narrow), 500_000, 4, 4);
    // Wide (CMAX 16, VRX_FULL 863): the time bound does, 134 slots in 500 µs.
    check(p1080_5994(SenderType::Wide), 500_000, 121, 14);
    // 720p50 narrow (CMAX 4, VRX_FULL 8).
    check(p720_50(), 500_000, 5, 2);
    // Slots longer than the bound: each packet at its read time.
    check(p1080_5994(SenderType::Narrow), 3_000, 0, 1);
    // Two slots in the bound: a batch of 3 (its last packet two slots early), no lead.
    check(p1080_5994(SenderType::Narrow), 7_500, 0, 3);
}

/// A poller far faster than TRS gets whole batches, one every `batch` slots, and the stream
/// still grades narrow with VRX at most `lead + batch`.
#[test]
fn a_batching_pacer_grants_whole_batches_to_a_fast_poller() {
    let t = p1080_5994(SenderType::Narrow);
    let mut pacer = Pacer::with_lead(t, 2).with_batch(4);
    let mut grader = Grader::new(t);
    let run = drive(&mut pacer, &mut grader, NOW, 2, |now, d, wait| {
        if wait {
            d.unwrap_or(now + 50)
        } else {
            now + 50
        }
    });
    assert_eq!((run.max_batch, run.budgets), (4, 2 * 4320 / 4));
    let s = grader.summary();
    assert_eq!((s.frames, s.narrow), (2, 2), "{s:?}");
    assert!(s.vrx_peak <= 6 && s.vrx_peak >= 4, "{s:?}");
    assert!(s.cinst_peak <= 4, "{s:?}");
    assert_eq!(pacer.stats().packets_late, 0);
}

#[test]
fn a_batch_starts_only_when_its_first_packet_is_due() {
    let t = p1080_5994(SenderType::Narrow);
    let mut pacer = Pacer::new(t).with_batch(4);
    let n = t.next_frame_after(NOW);
    pacer.start_frame(n);
    assert_eq!(pacer.due(t.packet_time(n, 0) - 1), Budget::Wait);
    assert_eq!(pacer.due(t.packet_time(n, 0)), Budget::Send(4));
    pacer.sent(4);
    assert_eq!(pacer.next_deadline(), Some(t.packet_time(n, 4)));
    assert_eq!(pacer.due(t.packet_time(n, 4) - 1), Budget::Wait);
    // A partial send (a full socket): the next batch starts at the next unsent packet's time.
    assert_eq!(pacer.due(t.packet_time(n, 4)), Budget::Send(4));
    pacer.sent(1);
    assert_eq!(pacer.due(t.packet_time(n, 4)), Budget::Wait);
    assert_eq!(pacer.next_deadline(), Some(t.packet_time(n, 5)));
    assert_eq!(pacer.due(t.packet_time(n, 5)), Budget::Send(4));
}

/// A batch whose send returned late counts as sent then: the next batch waits for the model
/// to drain from that time, so two batches never reach the wire back to back.
#[test]
fn a_batch_sent_late_delays_the_next_one() {
    let t = p1080_5994(SenderType::Wide); // CMAX 16
    let mut pacer = Pacer::new(t).with_batch(14);
    let n = t.next_frame_after(NOW);
    pacer.start_frame(n);
    let t0 = t.packet_time(n, 0);
    assert_eq!(pacer.due(t0), Budget::Send(14));
    // Preempted for 60 µs between the grant and the send's return.
    pacer.sent_at(14, t0 + 60_000);
    let next = pacer.next_deadline().unwrap();
    // Room for 14 means the level fell to 3: 11 drain slots (TDRAIN 3510.7 ns) after the
    // packets left at t0 + 60 µs, not after t0.
    let after = t0 + 60_000;
    assert!(
        (after + 11 * 3_510..=after + 11 * 3_511).contains(&next),
        "{}",
        next - after
    );
    assert_eq!(pacer.due(next - 1), Budget::Wait);
    assert!(matches!(pacer.due(next), Budget::Send(_)));
    // Lateness counts from when they left: packets 0..=13 were due by t0 + 13 · TRS.
    assert!(pacer.stats().packets_late > 0);
}

#[test]
fn a_late_poll_gets_the_backlog_in_batches_of_cmax() {
    let t = p1080_5994(SenderType::Narrow);
    let mut pacer = Pacer::new(t);
    let n = t.next_frame_after(NOW);
    pacer.start_frame(n);
    // 100 us late: 27 packets are due, CMAX is 6.
    let now = t.frame_epoch(n) + 100_000;
    assert_eq!(t.packets_due(n, now), 27);
    assert_eq!(pacer.due(now), Budget::Send(6));
    assert_eq!(
        pacer.due(now),
        Budget::Send(6),
        "due without sent does not change"
    );
    pacer.sent(6);
    // Cinst is 5 now; one more packet reaches CMAX.
    assert_eq!(pacer.due(now), Budget::Send(1));
    pacer.sent(1);
    assert_eq!(pacer.due(now), Budget::Wait);
    // The next packet may go at the first drain slot: TDRAIN = 3510.7 ns after this batch's
    // arrival as measured from the first packet.
    assert_eq!(pacer.next_deadline(), Some(now + 3_511));
    assert_eq!(pacer.due(now + 3_510), Budget::Wait);
    assert_eq!(pacer.due(now + 3_511), Budget::Send(1));
    pacer.sent(1);
    let s = pacer.stats();
    // Packets 0..=25 were sent after the read of the next one; 26 and 27 were not.
    assert_eq!((s.packets_sent, s.packets_late), (8, 8));
    assert_eq!(s.max_late_ns, 100_000);
    // Catching up from the start never exceeds CMAX, and the whole frame goes out.
    let mut pacer = Pacer::new(t);
    let mut grader = Grader::new(t);
    pacer.start_frame(n);
    let mut now = t.frame_epoch(n) + 100_000;
    let mut closed = None;
    loop {
        match pacer.due(now) {
            Budget::Send(k) => {
                assert!(k <= 6);
                for j in pacer.next_packet()..pacer.next_packet() + k {
                    closed = grader.on_packet(now, t.rtp_timestamp(n), j == 4319);
                }
                pacer.sent(k);
            }
            Budget::Wait => now = pacer.next_deadline().unwrap(),
            Budget::Done => break,
            other => panic!("{other:?}"),
        }
    }
    let grade = closed.unwrap();
    assert_eq!((grade.packets, grade.cinst_peak), (4320, 6));
    assert_eq!(grade.violation, Some(Violation::FirstPacketLate));
    assert!(grade.vrx_min < 0);
    let s = pacer.stats();
    assert_eq!((s.frames_sent, s.packets_sent), (1, 4320));
    assert!(s.packets_late > 27 && s.packets_late < 4320);
}

#[test]
fn a_late_start_skips_to_the_next_frame() {
    let t = p1080_5994(SenderType::Narrow);
    let mut pacer = Pacer::new(t);
    let n = t.next_frame_after(NOW);
    pacer.start_frame(n);
    // Just under a frame late: still sent (in batches).
    let just = t.packet_time(n + 1, 0) - 1;
    assert_eq!(pacer.due(just), Budget::Send(6));
    // A whole frame period late: abandoned.
    let now = t.packet_time(n + 1, 0) + 1;
    assert_eq!(pacer.due(now), Budget::Skipped(4320));
    assert_eq!(pacer.due(now), Budget::Idle);
    assert_eq!(pacer.next_deadline(), None);
    let s = pacer.stats();
    assert_eq!(
        (s.frames_skipped, s.packets_skipped, s.packets_sent),
        (1, 4320, 0)
    );
    let next = t.next_frame_after(now);
    assert_eq!(next, n + 2);
    pacer.start_frame(next);
    assert_eq!(pacer.due(now), Budget::Wait);
    assert_eq!(pacer.next_deadline(), Some(t.frame_epoch(next)));
    // Starting far in the past (a sender resuming after a stall) skips the same way.
    let mut pacer = Pacer::new(t);
    pacer.start_frame(0);
    assert_eq!(pacer.due(NOW), Budget::Skipped(4320));
    // Half a frame sent, then a stall of a frame period: the rest is skipped.
    let mut pacer = Pacer::new(t);
    pacer.start_frame(n);
    for j in 0..2160 {
        assert_eq!(pacer.due(t.packet_time(n, j)), Budget::Send(1));
        pacer.sent(1);
    }
    assert_eq!(pacer.due(t.packet_time(n + 1, 2160)), Budget::Skipped(2160));
    assert_eq!(
        pacer.stats().packets_sent + pacer.stats().packets_skipped,
        4320
    );
}

#[test]
fn a_pacer_that_keeps_late_frames_finishes_them_within_cmax_batches() {
    let t = p1080_5994(SenderType::Narrow);
    let mut pacer = Pacer::new(t).keep_late_frames();
    let n = t.next_frame_after(NOW);
    pacer.start_frame(n);
    // Two whole frame periods late: nothing is skipped, the backlog leaves at most CMAX at a
    // time, and only as fast as the network model drains.
    let mut now = t.packet_time(n + 2, 0);
    let mut sent = 0u32;
    let mut polls = 0u64;
    while sent < 4320 {
        match pacer.due(now) {
            Budget::Send(k) => {
                assert!(k <= t.cmax(), "batch {k} over CMAX {}", t.cmax());
                pacer.sent(k);
                sent += k;
            }
            Budget::Wait => now = pacer.next_deadline().unwrap().max(now + 1),
            other => panic!("unexpected {other:?} after {sent} packets"),
        }
        polls += 1;
        assert!(polls < 100_000, "the late frame never finishes");
    }
    assert_eq!(pacer.due(now), Budget::Done);
    let s = pacer.stats();
    assert_eq!(
        (s.frames_sent, s.frames_skipped, s.packets_skipped),
        (1, 0, 0)
    );
    assert_eq!(
        s.packets_late, 4320,
        "every packet left after the next read time"
    );
}

#[test]
fn frames_replaced_or_ended_early_count_as_skipped() {
    let t = small();
    let mut pacer = Pacer::new(t);
    pacer.start_frame(5);
    assert_eq!(pacer.due(t.packet_time(5, 2)), Budget::Send(3));
    pacer.sent(10); // clamped to the 3 granted
    assert_eq!(pacer.next_packet(), 3);
    pacer.sent(1); // nothing granted any more
    assert_eq!(pacer.next_packet(), 3);
    pacer.start_frame(6);
    assert_eq!(
        (pacer.stats().frames_skipped, pacer.stats().packets_skipped),
        (1, 1917)
    );
    assert_eq!(pacer.next_packet(), 0);
    pacer.frame_done();
    assert_eq!(
        (pacer.stats().frames_skipped, pacer.stats().packets_skipped),
        (2, 3837)
    );
    // A clock going backwards is clamped.
    pacer.start_frame(7);
    assert_eq!(pacer.due(t.packet_time(7, 0)), Budget::Send(1));
    assert_eq!(pacer.due(0), Budget::Send(1));
    assert_eq!(Budget::Send(4).packets(), 4);
    assert_eq!(Budget::Wait.packets(), 0);
}

#[test]
fn a_wide_pacer_bursts_up_to_the_wide_cmax() {
    let t = p1080_5994(SenderType::Wide);
    let mut pacer = Pacer::new(t);
    let n = t.next_frame_after(NOW);
    pacer.start_frame(n);
    assert_eq!(pacer.due(t.packet_time(n, 100)), Budget::Send(16));
    // Polling every 16 packet slots, 16 slots ahead: bursts of 16, graded wide.
    let mut pacer = Pacer::with_lead(t, 16);
    let mut grader = Grader::new(t);
    let step = t.packet_offset_ns(16);
    let run = drive(&mut pacer, &mut grader, NOW, 2, |now, _, _| now + step);
    assert_eq!(run.max_batch, 16);
    let s = grader.summary();
    assert_eq!((s.frames, s.wide), (2, 2), "{s:?}");
    assert!(s.cinst_peak <= 16 && s.cinst_peak > 6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Under any poll times, no batch exceeds CMAX, the model's Cinst never exceeds CMAX, and
    /// every packet of every frame is either sent or counted as skipped.
    #[test]
    fn cmax_holds_under_any_polling(
        steps in prop::collection::vec(0u64..200_000, 1..64),
        wide in any::<bool>(),
        start in 0u64..40_000_000,
        lead in 0u32..8,
        batch in 0u32..20,
    ) {
        let t = if wide { p1080_5994(SenderType::Wide) } else { p720_50() };
        let mut pacer = Pacer::with_lead(t, lead).with_batch(batch);
        let mut grader = Grader::new(t);
        let mut i = 0;
        // Tiny steps, zero included, would take forever over two frames: when told to wait, an
        // even step jumps to the deadline instead.
        let run = drive(&mut pacer, &mut grader, NOW + start, 2, |now, deadline, wait| {
            i += 1;
            let step = steps[i % steps.len()];
            match deadline {
                Some(d) if wait && step % 2 == 0 => d,
                _ => now + step,
            }
        });
        prop_assert!(run.max_batch <= t.cmax());
        prop_assert!(grader.summary().cinst_peak <= u64::from(t.cmax()));
        let s = pacer.stats();
        prop_assert_eq!(s.packets_sent + s.packets_skipped, (s.frames_sent + s.frames_skipped) * u64::from(t.packets()));
        prop_assert_eq!(s.packets_skipped, run.skipped);
        prop_assert!(s.packets_late <= s.packets_sent);
    }

    /// Polled at least once per TRS with a lead of 2, a narrow pacer's output grades narrow.
    #[test]
    fn jitter_within_the_lead_stays_narrow(
        steps in prop::collection::vec(1u64..=3_707, 1..200),
        linear in any::<bool>(),
    ) {
        let sender = if linear { SenderType::NarrowLinear } else { SenderType::Narrow };
        let t = p1080_5994(sender);
        let mut pacer = Pacer::with_lead(t, 2);
        let mut grader = Grader::new(t);
        let mut i = 0;
        drive(&mut pacer, &mut grader, NOW, 2, |now, _, _| {
            i += 1;
            now + steps[i % steps.len()]
        });
        let s = grader.summary();
        prop_assert_eq!((s.frames, s.narrow), (2, 2), "{:?}", s);
        prop_assert!(s.vrx_peak <= 3);
        prop_assert_eq!(pacer.stats().packets_late, 0);
    }

    /// A software pacer (narrow: lead 4, batches of 4; narrow linear: lead 5, batches of 3)
    /// polled at least once per TRS: still narrow, VRX at most lead + batch.
    #[test]
    fn batches_within_the_limits_stay_narrow(
        steps in prop::collection::vec(1u64..=3_707, 1..200),
        linear in any::<bool>(),
    ) {
        let sender = if linear { SenderType::NarrowLinear } else { SenderType::Narrow };
        let t = p1080_5994(sender);
        let mut pacer = Pacer::for_software(t, 500_000);
        let batch = pacer.batch();
        // 500 µs is over a hundred slots: VRX_FULL bounds the lead.
        let lead = u64::from(t.vrx_full() - 1 - batch);
        assert_eq!(pacer.lead_ns(), t.packet_offset_ns(lead));
        let mut grader = Grader::new(t);
        let mut i = 0;
        let run = drive(&mut pacer, &mut grader, NOW, 2, |now, _, _| {
            i += 1;
            now + steps[i % steps.len()]
        });
        let s = grader.summary();
        prop_assert_eq!((s.frames, s.narrow), (2, 2), "{:?}", s);
        prop_assert!(s.vrx_peak <= i64::from(lead as u32 + batch), "{:?}", s);
        prop_assert!(s.cinst_peak <= u64::from(pacer.cinst_cap()), "{:?}", s);
        prop_assert!(run.max_batch <= batch + 1);
        prop_assert_eq!(pacer.stats().packets_late, 0);
    }
}

// ---- fuzzing ----

#[test]
fn fuzz_survives_edge_inputs() {
    fuzz(&[]);
    fuzz(&[0xff; 64]);
    fuzz(&[0; 300]);
    let mut v = vec![1u8, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0];
    v.extend(std::iter::repeat_n(0xc0u8, 500));
    fuzz(&v);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzz_random_bytes(data in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzz(&data);
    }
}
