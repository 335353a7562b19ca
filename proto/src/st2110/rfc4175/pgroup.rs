//! Pixel groups and the video formats built on them.

use crate::st2110::{Depth, Sampling};

/// A pixel group (RFC 4175 §4.3, ST 2110-20 §6.2): the smallest run of octets that holds whole
/// samples of whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PGroup {
    /// Octets per pgroup.
    pub bytes: u32,
    /// Pixels per pgroup (for 4:2:0, over two scan lines: half of them on each).
    pub pixels: u32,
}

/// The pgroup of `sampling` at `depth`, or `None` where ST 2110-20 defines none (4:2:0 at 16
/// bits).
///
/// | sampling        | 8 bit | 10 bit | 12 bit | 16 bit |
/// |-----------------|-------|--------|--------|--------|
/// | 4:2:2           | 4/2   | 5/2    | 6/2    | 8/2    |
/// | 4:2:0           | 6/4   | 15/8   | 9/4    | —      |
/// | 4:4:4 and RGB   | 3/1   | 15/4   | 9/2    | 6/1    |
pub const fn pgroup(sampling: Sampling, depth: Depth) -> Option<PGroup> {
    let (bytes, pixels) = match (sampling, depth) {
        (Sampling::YCbCr422, Depth::D8) => (4, 2),
        (Sampling::YCbCr422, Depth::D10) => (5, 2),
        (Sampling::YCbCr422, Depth::D12) => (6, 2),
        (Sampling::YCbCr422, Depth::D16) => (8, 2),
        (Sampling::YCbCr420, Depth::D8) => (6, 4),
        (Sampling::YCbCr420, Depth::D10) => (15, 8),
        (Sampling::YCbCr420, Depth::D12) => (9, 4),
        (Sampling::YCbCr420, Depth::D16) => return None,
        (Sampling::YCbCr444 | Sampling::Rgb, Depth::D8) => (3, 1),
        (Sampling::YCbCr444 | Sampling::Rgb, Depth::D10) => (15, 4),
        (Sampling::YCbCr444 | Sampling::Rgb, Depth::D12) => (9, 2),
        (Sampling::YCbCr444 | Sampling::Rgb, Depth::D16) => (6, 1),
    };
    Some(PGroup { bytes, pixels })
}

/// Largest width and height: Line No and Offset are 15-bit fields, so lines run to 32767 and
/// a pgroup may start at most at pixel 32767.
pub const MAX_DIMENSION: u32 = 1 << 15;

/// Why a video format is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// No pgroup for this sampling and depth.
    #[error(
        "{sampling} at {depth} bits has no ST 2110-20 pgroup (4:2:2, 4:4:4 and RGB take 8, 10, 12 or 16 bits; 4:2:0 takes 8, 10 or 12)"
    )]
    Unsupported {
        /// The sampling asked for.
        sampling: Sampling,
        /// The depth asked for.
        depth: Depth,
    },
    /// The width is zero or not a whole number of pgroups.
    #[error("width {width} must be a non-zero multiple of {multiple} pixels (one pgroup's width)")]
    Width {
        /// The width asked for.
        width: u32,
        /// The pgroup's width in pixels.
        multiple: u32,
    },
    /// The height is zero or not a whole number of pgroup rows.
    #[error(
        "height {height} must be a non-zero multiple of {multiple} lines (one pgroup's height)"
    )]
    Height {
        /// The height asked for.
        height: u32,
        /// Lines per pgroup (2 for 4:2:0, else 1).
        multiple: u32,
    },
    /// Beyond the 15-bit line number or pixel offset.
    #[error(
        "{width}x{height} is too large: width and height are at most {MAX_DIMENSION} (15-bit offsets and line numbers)"
    )]
    TooLarge {
        /// The width asked for.
        width: u32,
        /// The height asked for.
        height: u32,
    },
}

/// A progressive ST 2110-20 video format: sampling, depth and size.
///
/// Its frame buffer (an "rfc4175 frame") is every sample row's pgroups in wire order, rows top
/// to bottom, with no padding: [`line_bytes`](Self::line_bytes) per row,
/// [`frame_bytes`](Self::frame_bytes) in all. A sample row is one scan line, except for 4:2:0
/// where a row of pgroups covers two scan lines (see the [module docs](super)).
///
/// Interlaced and PsF formats are not represented yet: every SRD has F = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Format {
    sampling: Sampling,
    depth: Depth,
    width: u32,
    height: u32,
}

impl Format {
    /// Validates the combination: a pgroup exists, the width is a whole number of pgroups, the
    /// height a whole number of pgroup rows (even for 4:2:0), both at most [`MAX_DIMENSION`].
    pub fn new(
        sampling: Sampling,
        depth: Depth,
        width: u32,
        height: u32,
    ) -> Result<Self, FormatError> {
        let pg = pgroup(sampling, depth).ok_or(FormatError::Unsupported { sampling, depth })?;
        let lines = lines_per_pgroup(sampling);
        let multiple = pg.pixels / lines;
        if width == 0 || !width.is_multiple_of(multiple) {
            return Err(FormatError::Width { width, multiple });
        }
        if height == 0 || !height.is_multiple_of(lines) {
            return Err(FormatError::Height {
                height,
                multiple: lines,
            });
        }
        if width > MAX_DIMENSION || height > MAX_DIMENSION {
            return Err(FormatError::TooLarge { width, height });
        }
        Ok(Self {
            sampling,
            depth,
            width,
            height,
        })
    }

    /// Colour sampling.
    pub const fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// Bits per component.
    pub const fn depth(&self) -> Depth {
        self.depth
    }

    /// Width in pixels.
    pub const fn width(&self) -> u32 {
        self.width
    }

    /// Height in lines.
    pub const fn height(&self) -> u32 {
        self.height
    }

    /// The pgroup.
    pub const fn pgroup(&self) -> PGroup {
        match pgroup(self.sampling, self.depth) {
            Some(pg) => pg,
            None => unreachable!(),
        }
    }

    /// Scan lines one pgroup covers: 2 for 4:2:0, else 1. SRD line numbers step by this.
    pub const fn pgroup_lines(&self) -> u32 {
        lines_per_pgroup(self.sampling)
    }

    /// Pixels one pgroup covers horizontally: SRD offsets are multiples of this.
    pub const fn pgroup_width(&self) -> u32 {
        self.pgroup().pixels / self.pgroup_lines()
    }

    /// Sample rows per frame: `height / pgroup_lines()`.
    pub const fn rows(&self) -> u32 {
        self.height / self.pgroup_lines()
    }

    /// Pgroups per sample row.
    pub const fn row_pgroups(&self) -> u32 {
        self.width / self.pgroup_width()
    }

    /// Octets of one sample row (one scan line; two for 4:2:0).
    pub const fn line_bytes(&self) -> usize {
        self.row_pgroups() as usize * self.pgroup().bytes as usize
    }

    /// Pgroups per frame.
    pub const fn frame_pgroups(&self) -> usize {
        self.row_pgroups() as usize * self.rows() as usize
    }

    /// Octets of one frame: `rows() · line_bytes()`.
    pub const fn frame_bytes(&self) -> usize {
        self.rows() as usize * self.line_bytes()
    }
}

const fn lines_per_pgroup(sampling: Sampling) -> u32 {
    match sampling {
        Sampling::YCbCr420 => 2,
        _ => 1,
    }
}
