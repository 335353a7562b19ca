#!/usr/bin/env python3
"""Writes the seed corpus under proto/fuzz/corpus/<target>/ (run from anywhere).

Every seed is built by hand here from the wire formats (RFC 3550, RFC 4175, ST 2110-30 / RFC 3190
L16/L24, RFC 9134, RFC 8331, SDP per ST 2110-10/-20/-22/-30/-40) so the corpus can be regenerated
and reviewed; the files it writes are what is committed.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rtp(seq, ts, pt=96, marker=False, ssrc=0x12345678):
    """A 12-byte RTP header: V=2, no padding/extension/CSRCs."""
    return struct.pack(">BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc)


def srd(length, line, offset, field=0, cont=False):
    """An RFC 4175 sample row data header."""
    return struct.pack(">HHH", length, (field << 15) | line, (0x8000 if cont else 0) | offset)


# 4:2:2 10-bit pgroup: 2 pixels in 5 bytes (Cb Y0 Cr Y1, 10 bits each), mid-grey.
PGROUP_422_10 = bytes([0x80, 0x08, 0x02, 0x00, 0x80])

# --- rtp -------------------------------------------------------------------------------------
write("rtp", "video_marker", rtp(0x1234, 0xDEADBEEF, marker=True) + b"\x00\x00" + srd(5, 0, 0) + PGROUP_422_10)
write("rtp", "audio_l24", rtp(7, 48000, pt=97) + bytes(36))
# V=2 P=1 X=1 CC=1: CSRC, a one-word header extension, 3 bytes of padding.
ext = struct.pack(">HH", 0xBEDE, 1) + bytes([0x10, 0xAA, 0x00, 0x00])
write("rtp", "csrc_ext_pad", struct.pack(">BBHII", 0xB1, 0x60, 1, 2, 3) + struct.pack(">I", 0xCAFEF00D) + ext + b"payload" + b"\x00\x00\x03")
# SeqExtender input: window 32, dropout 3000, then sequence numbers with a gap, a late one,
# a duplicate and a wrap.
seqs = [65530, 65531, 65533, 65532, 65533, 65535, 0, 1, 5, 2, 3000, 4]
write("rtp", "seq_stream", struct.pack(">HH", 32, 3000) + b"".join(struct.pack(">H", s) for s in seqs))

# --- rfc4175 ---------------------------------------------------------------------------------
# fuzz_payload view: extended sequence number, SRDs, pgroups.
write("rfc4175", "payload_one_srd", b"\x00\x01" + srd(20, 0, 0) + PGROUP_422_10 * 4)
write("rfc4175", "payload_two_srds", b"\x00\x00" + srd(10, 3, 4, cont=True) + srd(10, 4, 0) + PGROUP_422_10 * 4)
write("rfc4175", "payload_field2", b"\xff\xff" + srd(5, 539, 958, field=1) + PGROUP_422_10)
# Depacketizer stream: byte 0 picks format 0 (4:2:2 10-bit, 8x4: a line is 4 pgroups = 20 bytes);
# then (control, packet) pairs, control bit 7 clear: the packet is used raw.
stream = bytes([0])
for line in range(4):
    pkt = rtp(100 + line, 9000, marker=(line == 3)) + b"\x00\x00" + srd(20, line, 0) + PGROUP_422_10 * 4
    stream += bytes([len(pkt)]) + pkt
write("rfc4175", "depack_one_frame", stream)
# Near-valid packets (control bit 7 set) built by the fuzz driver from the bytes that follow.
write("rfc4175", "depack_near_valid", bytes([1]) + b"".join(bytes([0x88]) + bytes(range(i, i + 8)) for i in range(0, 96, 8)))

# --- st30 ------------------------------------------------------------------------------------
# Byte 0: bit 0 encoding (1 = L24), (b0 >> 1) % 3 sample rate (0 = 48 kHz), b0 >> 3 samples per
# packet; byte 1 channels; the rest a payload (and, 4 bytes at a time, RTP timestamps).
l24 = b"".join(struct.pack(">i", s)[1:] for s in [0, 1, -1, 0x7FFFFF, -0x800000, 0x123456] * 2)
write("st30", "l24_48k_2ch_6spp", bytes([(6 << 3) | 1, 2]) + l24)
l16 = b"".join(struct.pack(">h", s) for s in [0, 1, -1, 32767, -32768, 0x1234] * 2)
write("st30", "l16_48k_2ch_6spp", bytes([6 << 3, 2]) + l16)
write("st30", "timestamps", bytes([(6 << 3) | 1, 1]) + b"".join(struct.pack(">I", t) for t in [0, 6, 12, 24, 18, 30, 0xFFFFFFFA, 0]))

# --- rfc9134 (JPEG XS) -----------------------------------------------------------------------
# Header: T K L I(2) F(5) SEP(11) P(11). Codestream starts with SOC FF10, CAP FF50, PIH FF12.
codestream = bytes.fromhex("ff10ff500002ff12001a0000000007800438000000000000000000000000")
write("rfc9134", "first_packet", bytes.fromhex("80000000") + codestream)
write("rfc9134", "last_packet", bytes.fromhex("b1400803") + bytes.fromhex("aabbccddff11"))
write("rfc9134", "slice_mode_field2", bytes.fromhex("c8000001") + bytes(16))
stream = b""
for i, chunk in enumerate([codestream[:20], codestream[20:], b"\xff\x11"]):
    stream += bytes([(0x80 if i == 2 else 0) | len(chunk)]) + chunk
write("rfc9134", "stream", stream)

# --- rfc8331 (ANC) ---------------------------------------------------------------------------
# CEA-708 style caption packet: DID 0x61 SDID 0x01, 3 UDWs (hand-derived in the module's docs).
caption_anc = bytes.fromhex("80a1238558501 80e969a6556e4000000".replace(" ", ""))
write("rfc8331", "caption", bytes.fromhex("0001001001800000") + caption_anc)
# DID 0x41 SDID 0x05, no user data, line/offset unspecified.
empty_anc = bytes.fromhex("7fffff00906058024600 0000".replace(" ", ""))
write("rfc8331", "empty_anc", bytes.fromhex("0000000c01000000") + empty_anc)
write("rfc8331", "two_anc_field2", bytes.fromhex("0002001c02c00000") + caption_anc + empty_anc)
write("rfc8331", "no_anc", bytes.fromhex("0003000000400000"))


# --- sdp -------------------------------------------------------------------------------------
def crlf(lines):
    return "".join(line + "\r\n" for line in lines)


write("sdp", "st2110_20", crlf([
    "v=0",
    "o=- 123456 7 IN IP4 192.168.1.10",
    "s=mcm video",
    "t=0 0",
    "m=video 5004 RTP/AVP 96",
    "c=IN IP4 239.1.1.1/64",
    "a=source-filter: incl IN IP4 239.1.1.1 192.168.1.10",
    "a=rtpmap:96 raw/90000",
    "a=fmtp:96 sampling=YCbCr-4:2:2; width=1920; height=1080; exactframerate=60000/1001; "
    "depth=10; TCS=SDR; colorimetry=BT709; PM=2110GPM; SSN=ST2110-20:2017; TP=2110TPN; "
    "RANGE=NARROW; PAR=1:1; MAXUDP=1460; TROFF=637; CMAX=6",
    "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:127",
    "a=mediaclk:direct=0",
]))
# What FFmpeg's RTP muxer writes for raw video: LF line ends, a=tool, no ST 2110 extras.
write("sdp", "ffmpeg_raw", "\n".join([
    "v=0",
    "o=- 0 0 IN IP4 127.0.0.1",
    "s=No Name",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=tool:libavformat 61.7.100",
    "m=video 5004 RTP/AVP 96",
    "a=rtpmap:96 raw/90000",
    "a=fmtp:96 sampling=YCbCr-4:2:2; width=1280; height=720; depth=10; colorimetry=BT709",
]) + "\n")
write("sdp", "ffmpeg_l24", "\n".join([
    "v=0",
    "o=- 0 0 IN IP4 127.0.0.1",
    "s=No Name",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=tool:libavformat 61.7.100",
    "m=audio 5006 RTP/AVP 97",
    "b=AS:2304",
    "a=rtpmap:97 L24/48000/2",
]) + "\n")
write("sdp", "st2110_30", crlf([
    "v=0",
    "o=- 1 1 IN IP4 10.0.0.2",
    "s=mcm audio",
    "t=0 0",
    "m=audio 5008 RTP/AVP 97",
    "c=IN IP4 239.1.1.2/32",
    "a=rtpmap:97 L24/48000/8",
    "a=fmtp:97 channel-order=SMPTE2110.(SGRP,SGRP)",
    "a=ptime:0.125",
    "a=ts-refclk:ptp=IEEE1588-2008:traceable",
    "a=mediaclk:direct=0",
]))
write("sdp", "st2110_22_jxsv", crlf([
    "v=0",
    "o=- 2 2 IN IP6 2001:db8::1",
    "s=mcm jpeg xs",
    "t=0 0",
    "m=video 5010 RTP/AVP 98",
    "c=IN IP6 ff0e::1:2",
    "b=AS:200000",
    "a=rtpmap:98 jxsv/90000",
    "a=fmtp:98 packetmode=0; profile=High444.12; level=1k-1; sublevel=Sublev3bpp; "
    "sampling=YCbCr-4:2:2; width=1920; height=1080; depth=10; exactframerate=50; TP=2110TPN; "
    "SSN=ST2110-22:2019",
    "a=ts-refclk:localmac=7C-E9-D3-1B-9A-AF",
    "a=mediaclk:direct=0",
]))
write("sdp", "st2110_40_anc", crlf([
    "v=0",
    "o=- 3 3 IN IP4 10.0.0.3",
    "s=mcm anc",
    "t=0 0",
    "m=video 5012 RTP/AVP 100",
    "c=IN IP4 239.1.1.4/64",
    "a=rtpmap:100 smpte291/90000",
    "a=fmtp:100 DID_SDID={0x61,0x01};DID_SDID={0x41,0x05}; VPID_Code=132",
    "a=mediaclk:direct=0",
]))

# --- st21 ------------------------------------------------------------------------------------
# timing: sel (rate index << 1), height u16le, flags (sender << 1 | interlace), packets u16le;
# grader: t u64le, count, count x (step u32le, ts u32le); pacer: lead, now u64le, shift, frame+,
# then one step byte per poll.
def st21(sel, height, flags, packets, tail):
    head = bytes([sel]) + struct.pack("<HBH", height, flags, packets)
    grader = struct.pack("<QB", 1_000_000, 4) + b"".join(
        struct.pack("<II", (i * 7_000) << 1 | (i == 3), 1500) for i in range(4))
    pacer = bytes([2]) + struct.pack("<Q", 5_000_000_000) + bytes([0, 1])
    return head + grader + pacer + tail


steps = bytes([0xC0, 0x40 | 1, 0xC0, 0xC1, 0x80, 0xC0, 0x05, 0xC0, 0xFF, 0xC0] * 6)
write("st21", "p5994_narrow", st21(0, 1080, 0, 16, steps))
write("st21", "p50_wide_interlaced", st21(2, 1080, (2 << 1) | 1, 40, steps))
write("st21", "p25_linear_long", st21(6, 2160, (1 << 1) | 0x40, 300, steps[::-1]))

# --- frame -----------------------------------------------------------------------------------
# Byte 0: how many bytes each piece fed to the decoder holds; then length-prefixed frames.
# Protobuf bodies: an empty message, a field-1 submessage, an unknown varint field.
frames = b"".join(struct.pack(">I", len(b)) + b for b in [b"", b"\x0a\x00", b"\x0a\x02\x08\x01", b"\xf8\x3f\x05"])
write("frame", "three_bytes_at_a_time", bytes([3]) + frames)
write("frame", "all_at_once", bytes([255]) + frames)
write("frame", "oversized", bytes([8]) + b"\x7f\xff\xff\xff" + bytes(4))
