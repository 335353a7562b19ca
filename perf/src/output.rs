//! Files written beside the text/JSON report: HdrHistogram percentile distributions (`.hgrm`),
//! per-frame pacing grades (CSV) and SVG plots.
//!
//! `.hgrm` is the text HdrHistogram's `outputPercentileDistribution` prints and its plotter
//! reads: a table `Value Percentile TotalCount 1/(1-Percentile)` with one row per percentile
//! step (five steps per halving of the distance to 100 %), the last row (100 %) without the
//! `1/(1-Percentile)` column, then `#[Mean …]`, `#[Max …]` and `#[Buckets …]` footer lines.
//! The histograms record nanoseconds; the files give microseconds (unit scaling ratio 1000),
//! with as many decimals as the histogram keeps significant digits (3: nanosecond resolution).
//!
//! The SVG plots are drawn with `plotters`' SVG backend: the latency distribution against the
//! percentile on a log scale of 1/(1-p) (0 %, 90 %, 99 %, 99.9 % … evenly spaced, as
//! HdrHistogram's plotter shows it), one series per histogram; and the VRX peak and minimum
//! (and Cinst peak) of every graded frame, with CMAX and VRX_FULL as horizontal lines.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use hdrhistogram::Histogram;
use mcm_proto::st2110::st21::{FrameGrade, SenderType, Timing};
use plotters::prelude::*;

use crate::pacing::class_name;

/// Nanoseconds per microsecond: the unit scaling of `.hgrm` values and plotted latencies.
pub const NS_PER_US: f64 = 1000.0;

/// Percentile steps per halving of the distance to 100 % in `.hgrm` files (HdrHistogram's
/// customary 5).
pub const TICKS_PER_HALF: u32 = 5;

/// `--hgrm` and `--svg`, shared by the commands.
#[derive(Debug, Args, Clone, Default)]
pub struct OutputArgs {
    /// Directory (created when missing) for files beside the report: an HdrHistogram
    /// percentile distribution (.hgrm, microseconds) per latency histogram, and the graded
    /// frames as CSV where pacing is graded.
    #[arg(long, value_name = "DIR")]
    pub hgrm: Option<PathBuf>,
    /// SVG file for plots: latency against percentile (one series per run) and, where pacing
    /// is graded, VRX and Cinst per frame against CMAX and VRX_FULL.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

impl OutputArgs {
    /// Writes `text` to `name` in the `--hgrm` directory (nothing without `--hgrm`), saying so
    /// on stderr (stdout stays the report).
    pub fn write_in_dir(&self, name: &str, text: &str) -> Result<(), String> {
        let Some(dir) = &self.hgrm else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("--hgrm {}: {e}", dir.display()))?;
        write_file(&dir.join(name), text)
    }

    /// Writes `text` to the `--svg` file (nothing without `--svg`).
    pub fn write_svg(&self, text: impl FnOnce() -> Result<String, String>) -> Result<(), String> {
        match &self.svg {
            Some(path) => write_file(path, &text()?),
            None => Ok(()),
        }
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("mcm-perf: wrote {}", path.display());
    Ok(())
}

/// `h` (nanoseconds) as an HdrHistogram percentile distribution in microseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let digits = usize::from(h.sigfig());
    let us = |ns: f64| ns / NS_PER_US;
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF) {
        total += v.count_since_last_iteration();
        let value = us(v.value_iterated_to() as f64);
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:>12.digits$} {q:>14.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:>12.digits$} {q:>14.12} {total:>10}");
        }
    }
    // HdrHistogram's sub-bucket count: the power of two that holds 2 * 10^digits.
    let sub_buckets = (2u64 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.digits$}, StdDeviation   = {:>12.digits$}]",
        us(h.mean()),
        us(h.stdev())
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.digits$}, Total count    = {:>12}]",
        us(h.max() as f64),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    out
}

/// The graded frames as CSV, one row per frame in grading order (`index` from 0; `frame` is
/// the frame period its first packet arrived in).
pub fn pacing_csv(grades: &[FrameGrade]) -> String {
    let mut out = String::from(
        "index,rtp_timestamp,frame,packets,vrx_peak,vrx_min,cinst_peak,\
         first_packet_offset_us,rtp_offset,class,violation\n",
    );
    for (i, g) in grades.iter().enumerate() {
        let _ = writeln!(
            out,
            "{i},{},{},{},{},{},{},{:.3},{},{},{}",
            g.rtp_timestamp,
            g.frame,
            g.packets,
            g.vrx_peak,
            g.vrx_min,
            g.cinst_peak,
            g.first_packet_offset_ns as f64 / 1000.0,
            g.rtp_offset,
            class_name(g.class),
            g.violation.map(|v| format!("{v:?}")).unwrap_or_default()
        );
    }
    out
}

/// One latency distribution to plot.
#[derive(Debug, Clone)]
pub struct LatencySeries {
    /// Legend text.
    pub label: String,
    /// Latencies in nanoseconds.
    pub hist: Histogram<u64>,
}

/// The points of `h`'s percentile plot: (log10(1/(1-p)), latency µs) for every percentile
/// step below 100 %, then the maximum at log10(count) (the percentile of the largest of
/// `count` samples, 1 - 1/count), or further right when the steps went further. Empty for an
/// empty histogram.
pub fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = h
        .iter_quantiles(TICKS_PER_HALF)
        .filter(|v| v.quantile_iterated_to() < 1.0)
        .map(|v| {
            (
                (1.0 / (1.0 - v.quantile_iterated_to())).log10(),
                v.value_iterated_to() as f64 / NS_PER_US,
            )
        })
        .collect();
    if !h.is_empty() {
        let last_x = points.last().map_or(0.0, |p| p.0);
        points.push((
            last_x.max((h.len() as f64).log10()),
            h.max() as f64 / NS_PER_US,
        ));
    }
    points
}

/// The label of a point on the log(1/(1-p)) axis: 0 → "0%", 1 → "90%", 3 → "99.9%".
pub fn percentile_label(x: f64) -> String {
    let decimals = (x.round() as usize).saturating_sub(2);
    format!("{:.*}%", decimals, 100.0 * (1.0 - 10f64.powf(-x)))
}

fn svg_err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing the SVG: {e:?}")
}

/// What an SVG shows: latency distributions, graded frames, or both (one above the other).
#[derive(Debug, Default)]
pub struct Plot<'a> {
    /// Title of the latency chart.
    pub latency_title: String,
    /// The latency distributions (no latency chart when empty).
    pub latency: &'a [LatencySeries],
    /// Title of the pacing chart.
    pub pacing_title: String,
    /// Graded frames and the timing graded against (no pacing chart when `None`).
    pub pacing: Option<(&'a [FrameGrade], Option<&'a Timing>)>,
}

/// Draws `plot` as an SVG document.
pub fn svg(plot: &Plot<'_>) -> Result<String, String> {
    let charts = usize::from(!plot.latency.is_empty()) + usize::from(plot.pacing.is_some());
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (1000, 560 * charts.max(1) as u32))
            .into_drawing_area();
        root.fill(&WHITE).map_err(svg_err)?;
        let areas = root.split_evenly((charts.max(1), 1));
        let mut areas = areas.iter();
        if !plot.latency.is_empty() {
            let area = areas.next().expect("an area per chart");
            latency_chart(area, &plot.latency_title, plot.latency)?;
        }
        if let Some((grades, timing)) = plot.pacing {
            let area = areas.next().expect("an area per chart");
            pacing_chart(area, &plot.pacing_title, grades, timing)?;
        }
        root.present().map_err(svg_err)?;
    }
    Ok(text)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn color(i: usize) -> RGBAColor {
    Palette99::pick(i).to_rgba()
}

fn latency_chart(area: &Area<'_>, title: &str, series: &[LatencySeries]) -> Result<(), String> {
    let points: Vec<Vec<(f64, f64)>> = series.iter().map(|s| percentile_points(&s.hist)).collect();
    let all = points.iter().flatten();
    let x_max = all.clone().map(|p| p.0).fold(1.0f64, f64::max).ceil();
    let y_max = all.map(|p| p.1).fold(1.0f64, f64::max) * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(svg_err)?;
    chart
        .configure_mesh()
        // One label per whole number: 0 %, 90 %, 99 %, 99.9 % ...
        .x_labels(x_max as usize + 1)
        .x_desc("percentile (log scale of 1/(1-p))")
        .y_desc("latency (us)")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()
        .map_err(svg_err)?;
    for (i, (s, p)) in series.iter().zip(points).enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(p, c.stroke_width(2)))
            .map_err(svg_err)?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(svg_err)
}

fn pacing_chart(
    area: &Area<'_>,
    title: &str,
    grades: &[FrameGrade],
    timing: Option<&Timing>,
) -> Result<(), String> {
    let n = grades.len().max(1) as f64;
    // Horizontal lines: the narrow class's limits; the wide class's (far higher: they would
    // flatten a narrow stream's plot) for a wide sender or frames beyond the narrow limits.
    let limits: Vec<(&str, i64)> = timing
        .map(|t| {
            let mut l = vec![
                ("VRX_FULL narrow", i64::from(t.vrx_full_narrow())),
                ("CMAX narrow", i64::from(t.cmax_narrow())),
            ];
            let beyond = grades.iter().any(|g| {
                g.vrx_peak > i64::from(t.vrx_full_narrow())
                    || g.cinst_peak > u64::from(t.cmax_narrow())
            });
            if t.sender() == SenderType::Wide || beyond {
                l.push(("VRX_FULL wide", i64::from(t.vrx_full_wide())));
                l.push(("CMAX wide", i64::from(t.cmax_wide())));
            }
            l
        })
        .unwrap_or_default();
    let y_hi = grades
        .iter()
        .map(|g| g.vrx_peak.max(g.cinst_peak as i64))
        .chain(limits.iter().map(|l| l.1))
        .fold(1, i64::max);
    let y_lo = grades.iter().map(|g| g.vrx_min).fold(0, i64::min);
    let pad = ((y_hi - y_lo) as f64 * 0.05).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, (y_lo as f64 - pad)..(y_hi as f64 + pad))
        .map_err(svg_err)?;
    chart
        .configure_mesh()
        .x_desc("graded frame")
        .y_desc("packets")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(svg_err)?;
    type Get = fn(&FrameGrade) -> f64;
    let per_frame: [(&str, Get); 3] = [
        ("VRX peak", |g| g.vrx_peak as f64),
        ("VRX min", |g| g.vrx_min as f64),
        ("Cinst peak", |g| g.cinst_peak as f64),
    ];
    for (i, (label, get)) in per_frame.into_iter().enumerate() {
        let c = color(i);
        let pts = grades.iter().enumerate().map(|(j, g)| (j as f64, get(g)));
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(svg_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    for (i, (label, v)) in limits.iter().enumerate() {
        let c = color(per_frame.len() + i);
        let y = *v as f64;
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, y), (n, y)],
                8,
                4,
                c.stroke_width(1),
            ))
            .map_err(svg_err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(svg_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report;
    use mcm_proto::st2110::FrameRate;
    use mcm_proto::st2110::st21::{Compliance, Violation};

    /// One parsed `.hgrm` row: value (µs), percentile, total count, 1/(1-p) (None on the last).
    type Row = (f64, f64, u64, Option<f64>);

    /// Parses an `.hgrm` text: the rows and the footer's (mean, max, total count, buckets,
    /// sub-buckets). Panics on anything out of format.
    fn parse_hgrm(text: &str) -> (Vec<Row>, (f64, f64, u64, u64, u64)) {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let mut rows = Vec::new();
        let mut footer = Vec::new();
        for l in lines {
            if let Some(f) = l.strip_prefix("#[") {
                let f = f.strip_suffix(']').expect("footer ends with ]");
                for kv in f.split(", ") {
                    let (_, v) = kv.split_once('=').expect("key = value");
                    footer.push(v.trim().to_owned());
                }
                continue;
            }
            assert!(footer.is_empty(), "a row after the footer: {l:?}");
            let c: Vec<&str> = l.split_whitespace().collect();
            assert!(c.len() == 3 || c.len() == 4, "{l:?}");
            rows.push((
                c[0].parse().unwrap(),
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                c.get(3).map(|s| s.parse().unwrap()),
            ));
        }
        let f: Vec<&str> = footer.iter().map(String::as_str).collect();
        assert_eq!(f.len(), 6, "{footer:?}");
        (
            rows,
            (
                f[0].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
                f[5].parse().unwrap(),
            ),
        )
    }

    /// 1000 samples: 900 at 100 µs, 90 at 1 ms, 9 at 5 ms, 1 at 20 ms.
    fn known() -> Histogram<u64> {
        let mut h = report::new_histogram();
        for (us, n) in [(100u64, 900u64), (1000, 90), (5000, 9), (20_000, 1)] {
            h.record_n(us * 1000, n).unwrap();
        }
        h
    }

    /// `a` and `b` agree within the histogram's 3 significant digits.
    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 1e-3 + 1e-3
    }

    #[test]
    fn the_hgrm_file_parses_back_to_the_histograms_percentiles_and_counts() {
        let h = known();
        let (rows, (mean, max, count, buckets, sub)) = parse_hgrm(&hgrm(&h));
        assert!(rows.len() > 20, "{rows:?}");
        // Every row: its value is the histogram's value at its percentile (the smallest value
        // with at least that share of the samples at or below it; p is printed rounded), its
        // count the samples at or below that value, 1/(1-p) consistent; all grow.
        let len = h.len() as f64;
        for (i, &(v, p, total, inv)) in rows.iter().enumerate() {
            let ns = (v * NS_PER_US).round() as u64;
            assert_eq!(
                ns,
                h.highest_equivalent(ns),
                "row {i}: a bucket's top value"
            );
            assert_eq!(total, h.count_between(0, ns), "row {i}: {:?}", rows[i]);
            assert!(total as f64 / len >= p - 1e-9, "row {i}: {:?}", rows[i]);
            let below = h.count_between(0, h.lowest_equivalent(ns).saturating_sub(1));
            assert!(
                below as f64 / len < p + 1e-9 || p == 0.0,
                "row {i}: {:?}",
                rows[i]
            );
            match inv {
                Some(inv) => assert!((inv - 1.0 / (1.0 - p)).abs() <= 0.0051, "row {i}"),
                None => assert_eq!((i, p), (rows.len() - 1, 1.0), "only the last row is 100%"),
            }
            if i > 0 {
                assert!(p > rows[i - 1].1 && v >= rows[i - 1].0 && total >= rows[i - 1].2);
            }
        }
        // The known distribution, in microseconds.
        let at = |p: f64| rows.iter().find(|r| r.1 >= p).unwrap().0;
        assert!(near(at(0.0), 100.0) && near(at(0.5), 100.0) && near(at(0.85), 100.0));
        assert!(near(at(0.91), 1000.0) && near(at(0.985), 1000.0));
        assert!(near(at(0.991), 5000.0) && near(at(0.9985), 5000.0));
        assert!(near(at(0.9991), 20_000.0));
        let last = rows.last().unwrap();
        assert!(near(last.0, 20_000.0) && last.2 == 1000, "{last:?}");
        // Footer.
        assert!(
            near(mean, (900.0 * 100.0 + 90e3 + 9.0 * 5e3 + 20e3) / 1000.0),
            "{mean}"
        );
        assert!(near(max, 20_000.0));
        assert_eq!(count, 1000);
        assert_eq!(buckets, u64::from(h.buckets()));
        assert_eq!(sub, 2048, "3 significant digits: 2048 sub-buckets");
        // An empty histogram: header and footer only.
        let (rows, (_, _, count, _, _)) = parse_hgrm(&hgrm(&report::new_histogram()));
        assert!(rows.is_empty());
        assert_eq!(count, 0);
    }

    #[test]
    fn percentile_points_lie_on_the_log_axis() {
        let h = known();
        let p = percentile_points(&h);
        assert!(p[0].0 == 0.0 && near(p[0].1, 100.0), "{p:?}");
        // x = log10(1/(1-q)): 90 % at 1, 99 % at 2, 99.9 % at 3; the steps between whole
        // numbers show the value of that decade.
        for &(x, us) in &p {
            let want = match x {
                x if x < 1.0 - 1e-6 => 100.0,
                x if x > 1.0 + 1e-6 && x < 2.0 - 1e-6 => 1000.0,
                x if x > 2.0 + 1e-6 && x < 3.0 - 1e-6 => 5000.0,
                x if x > 3.0 + 1e-6 => 20_000.0,
                _ => continue,
            };
            assert!(near(us, want), "({x}, {us}) in {p:?}");
        }
        let last = p.last().unwrap();
        assert!(last.0 >= 3.0 && near(last.1, 20_000.0), "{last:?}");
        assert!(p.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
        assert!(percentile_points(&report::new_histogram()).is_empty());
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }

    /// Minimal XML well-formedness: the tags nest and close, the root is `<svg>`.
    fn assert_well_formed_svg(text: &str) {
        let body = text.trim_start();
        let body = match body.strip_prefix("<?xml") {
            Some(rest) => rest.split_once("?>").unwrap().1.trim_start(),
            None => body,
        };
        assert!(body.starts_with("<svg"), "{}", &body[..body.len().min(80)]);
        let mut open: Vec<&str> = Vec::new();
        let mut rest = body;
        let mut roots = 0;
        while let Some(i) = rest.find('<') {
            let (tag, after) = rest[i + 1..].split_once('>').expect("an unclosed tag");
            rest = after;
            if tag.starts_with('!') || tag.starts_with('?') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    open.pop(),
                    Some(name.trim()),
                    "</{name}> closes the wrong tag"
                );
                continue;
            }
            let name = tag.split_whitespace().next().expect("a tag name");
            let name = name.trim_end_matches('/');
            if open.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        assert!(open.is_empty(), "unclosed: {open:?}");
        assert_eq!(roots, 1, "one root element");
        assert!(rest.trim().is_empty(), "text after the root: {rest:?}");
    }

    #[test]
    fn the_latency_svg_is_well_formed_with_a_series_per_run() {
        let mut slow = known();
        slow.record_n(50_000_000, 10).unwrap();
        let series = [
            LatencySeries {
                label: "1 receiver".into(),
                hist: known(),
            },
            LatencySeries {
                label: "4 receivers".into(),
                hist: slow,
            },
        ];
        let text = svg(&Plot {
            latency_title: "put->get latency".into(),
            latency: &series,
            ..Plot::default()
        })
        .unwrap();
        assert_well_formed_svg(&text);
        for s in [
            "1 receiver",
            "4 receivers",
            "put-&gt;get latency",
            "99.9%",
            "latency (us)",
        ] {
            assert!(text.contains(s), "{s:?} missing");
        }
        // Two data lines plus their legend marks.
        assert!(text.matches("<polyline").count() >= 2, "{text}");
    }

    #[test]
    fn the_pacing_svg_shows_vrx_per_frame_and_the_limits() {
        let grade = |i: u64| FrameGrade {
            rtp_timestamp: 1000 + i as u32,
            frame: 10 + i,
            packets: 4320,
            first_packet_offset_ns: 20_000,
            rtp_offset: 0,
            vrx_peak: 3 + (i % 3) as i64,
            vrx_min: if i == 4 { -2 } else { 0 },
            cinst_peak: 1,
            class: if i == 4 {
                Compliance::Fail
            } else {
                Compliance::Narrow
            },
            violation: (i == 4).then_some(Violation::VrxUnderflow),
        };
        let grades: Vec<FrameGrade> = (0..8).map(grade).collect();
        let t = Timing::new(
            FrameRate::new(60000, 1001).unwrap(),
            1080,
            false,
            4320,
            SenderType::Narrow,
        );
        let series = [LatencySeries {
            label: "1 receiver".into(),
            hist: known(),
        }];
        let text = svg(&Plot {
            latency_title: "latency".into(),
            latency: &series,
            pacing_title: "ST 2110-21".into(),
            pacing: Some((&grades, Some(&t))),
        })
        .unwrap();
        assert_well_formed_svg(&text);
        for s in [
            "VRX peak",
            "VRX min",
            "Cinst peak",
            "VRX_FULL narrow",
            "CMAX narrow",
            "ST 2110-21",
            "1 receiver",
        ] {
            assert!(text.contains(s), "{s:?} missing");
        }
        assert!(
            !text.contains("VRX_FULL wide"),
            "a narrow stream within its limits"
        );
        let wide = Timing::new(t.rate(), 1080, false, 4320, SenderType::Wide);
        let text = svg(&Plot {
            pacing: Some((&grades, Some(&wide))),
            ..Plot::default()
        })
        .unwrap();
        assert_well_formed_svg(&text);
        assert!(text.contains("VRX_FULL wide") && text.contains("CMAX wide"));
        // Pacing alone, and with no frame graded, still draw.
        assert_well_formed_svg(
            &svg(&Plot {
                pacing: Some((&[], None)),
                ..Plot::default()
            })
            .unwrap(),
        );

        let csv = pacing_csv(&grades);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 9);
        assert!(lines[0].starts_with("index,rtp_timestamp,frame,packets,vrx_peak,vrx_min"));
        assert_eq!(lines[5], "4,1004,14,4320,4,-2,1,20.000,0,fail,VrxUnderflow");
        assert_eq!(lines[1], "0,1000,10,4320,3,0,1,20.000,0,narrow,");
    }
}
