//! SVG plots of benchmark results, written by hand (no plotting dependency): a latency CDF on a
//! log-latency / "nines" percentile grid, and a time series (IOPS over time).
//!
//! The output is a pure function of the input: same series, same bytes. Labels are XML-escaped;
//! points with a NaN or infinite coordinate, or one beyond ±10^15 (or a latency below 10^-6 µs),
//! are skipped; a plot with nothing to draw says "no data".
//! Every series is drawn as exactly one `<polyline>` (an empty one if it has no usable point), and
//! nothing else in a plot is a `<polyline>` or a `<path>`.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::fio::LatencySummary;

/// One line of a plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    /// `latency_cdf`: (latency in µs, fraction 0..=1 of operations at or below it).
    /// `timeseries`: (seconds, value).
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { label: label.into(), points }
    }
}

const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 84.0;
const TOP: f64 = 48.0;
const PLOT_W: f64 = 560.0;
const PLOT_H: f64 = 400.0;
/// The highest percentile the nines axis goes to: 99.9999 %.
const MAX_NINES: f64 = 6.0;
/// Series with at most this many points get a marker on each point (fio's percentile lists).
const MARKERS_UP_TO: usize = 40;
/// Coordinates beyond this (in absolute value) are not drawn: they would only break the axis math.
const LIMIT: f64 = 1e15;
/// The smallest latency drawn, in µs (a picosecond): the log axis needs a floor.
const MIN_LATENCY_US: f64 = 1e-6;
/// Colours that stay apart for the common kinds of colour blindness (Okabe-Ito, then Tableau).
const PALETTE: [&str; 10] =
    ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#8c564b", "#7f7f7f", "#bcbd22"];

/// The "nines" of a percentile: `-log10(1 - p)` for a fraction `p` (0.9 → 1, 0.99 → 2, 0.999 → 3).
/// 1 and above map to infinity.
pub fn nines(p: f64) -> f64 {
    if p >= 1.0 { f64::INFINITY } else { -(1.0 - p).log10() }
}

/// The CDF of an HDR histogram as (µs, fraction) points, finer towards the tail (the histogram's
/// quantile iterator). `units_per_us` is how many of the histogram's units make a microsecond:
/// 1000 for a histogram of nanoseconds, 1 for one of microseconds.
pub fn cdf_points(hist: &Histogram<u64>, units_per_us: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    if hist.is_empty() || !(units_per_us.is_finite() && units_per_us > 0.0) {
        return out;
    }
    for v in hist.iter_quantiles(5) {
        let point = (v.value_iterated_to() as f64 / units_per_us, v.quantile());
        if out.last() != Some(&point) {
            out.push(point);
        }
    }
    out
}

/// The CDF fio reported (its percentile list) as (µs, fraction) points.
pub fn fio_cdf_points(latency: &LatencySummary) -> Vec<(f64, f64)> {
    latency.percentiles.iter().map(|&(p, us)| (us, p / 100.0)).collect()
}

/// A latency CDF: log-scale latency on x (ticks at 1-2-5 per decade), percentile on y on the
/// nines scale (gridlines at 0, 50, 90, 99, 99.9, …), one coloured line per series.
/// Points at fraction 1 (or beyond the axis's top, 99.9999 %) are drawn on the top edge.
pub fn latency_cdf(series: &[Series], title: &str) -> String {
    let usable = |&(x, y): &(f64, f64)| (MIN_LATENCY_US..=LIMIT).contains(&x) && (0.0..=1.0).contains(&y);
    let points: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            let mut p: Vec<(f64, f64)> = s.points.iter().copied().filter(usable).collect();
            p.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.total_cmp(&b.0)));
            p
        })
        .collect();
    let all = || points.iter().flatten();
    let (Some(xmin), Some(xmax)) = (all().map(|p| p.0).reduce(f64::min), all().map(|p| p.0).reduce(f64::max)) else {
        return no_data(title, "latency", "percentile");
    };
    // The x axis: from the 1-2-5 value at or below the fastest to the one at or above the slowest.
    let lo = step125_floor(xmin);
    let mut hi = step125_ceil(xmax);
    if hi <= lo {
        hi = step125_ceil(lo * 1.000_001);
    }
    let (llo, lhi) = (lo.log10(), hi.log10());
    let px = |x: f64| LEFT + (x.log10() - llo) / (lhi - llo) * PLOT_W;
    // The y axis: up to the nines of the highest percentile below 100 %, at least 99 %.
    let top_seen = all().map(|p| nines(p.1)).filter(|n| n.is_finite()).fold(0.0, f64::max);
    let top = (top_seen - 1e-9).ceil().clamp(2.0, MAX_NINES);
    let py = |p: f64| TOP + PLOT_H - nines(p).min(top) / top * PLOT_H;

    let mut svg = open(title);
    // Horizontal gridlines: 0 %, 50 %, then every nine.
    let mut ys = vec![(0.0, "0%".to_string()), (0.5, "50%".to_string())];
    for n in 1..=(top as u32) {
        ys.push((1.0 - 10f64.powi(-(n as i32)), format!("{}%", percent_label(n))));
    }
    for (p, label) in &ys {
        let y = py(*p);
        grid_line(&mut svg, LEFT, y, LEFT + PLOT_W, y, *p == 0.5);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" class="tick">{label}</text>"#,
            n(LEFT - 8.0),
            n(y + 4.0)
        );
    }
    // Vertical gridlines at 1-2-5 values; with many decades only the decades get a label.
    let decades = lhi - llo;
    for (x, mantissa) in ticks125(lo, hi) {
        let gx = px(x);
        grid_line(&mut svg, gx, TOP, gx, TOP + PLOT_H, mantissa != 1);
        if mantissa == 1 || decades <= 3.0 + 1e-9 {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" class="tick">{}</text>"#,
                n(gx),
                n(TOP + PLOT_H + 18.0),
                duration_label(x)
            );
        }
    }
    frame(&mut svg, "latency (log scale)", "percentile (nines scale)");
    for (i, pts) in points.iter().enumerate() {
        let scaled: Vec<(f64, f64)> = pts.iter().map(|&(x, p)| (px(x), py(p))).collect();
        draw_series(&mut svg, i, &scaled);
    }
    legend(&mut svg, series, &points);
    close(svg)
}

/// A time series: seconds on x, a linear y axis with round ticks, one coloured line per series.
pub fn timeseries(series: &[Series], title: &str, y_label: &str) -> String {
    let points: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            let mut p: Vec<(f64, f64)> =
                s.points.iter().copied().filter(|(x, y)| x.abs() <= LIMIT && y.abs() <= LIMIT).collect();
            p.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            p
        })
        .collect();
    let all = || points.iter().flatten();
    let (Some(xmin), Some(xmax)) = (all().map(|p| p.0).reduce(f64::min), all().map(|p| p.0).reduce(f64::max)) else {
        return no_data(title, "time (s)", y_label);
    };
    let (ymin, ymax) =
        (all().map(|p| p.1).fold(f64::INFINITY, f64::min), all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max));
    // Time and counts start at zero unless they go below it.
    let xt = nice_ticks(xmin.min(0.0), xmax);
    let yt = nice_ticks(ymin.min(0.0), ymax);
    let (x0, x1) = (xt.first, xt.last);
    let (y0, y1) = (yt.first, yt.last);
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * PLOT_W;
    let py = |y: f64| TOP + PLOT_H - (y - y0) / (y1 - y0) * PLOT_H;

    let mut svg = open(title);
    for v in yt.values() {
        let y = py(v);
        grid_line(&mut svg, LEFT, y, LEFT + PLOT_W, y, false);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" class="tick">{}</text>"#,
            n(LEFT - 8.0),
            n(y + 4.0),
            yt.label(v)
        );
    }
    for v in xt.values() {
        let x = px(v);
        grid_line(&mut svg, x, TOP, x, TOP + PLOT_H, false);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" class="tick">{}</text>"#,
            n(x),
            n(TOP + PLOT_H + 18.0),
            xt.label(v)
        );
    }
    frame(&mut svg, "time (s)", y_label);
    for (i, pts) in points.iter().enumerate() {
        let scaled: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (px(x), py(y))).collect();
        draw_series(&mut svg, i, &scaled);
    }
    legend(&mut svg, series, &points);
    close(svg)
}

/// Escapes text for XML content and attribute values, dropping characters XML 1.0 cannot hold.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with one decimal (never `-0.0`).
fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == 0.0 { "0".into() } else { format!("{r}") }
}

fn open(title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#,
        w = WIDTH,
        h = HEIGHT
    );
    s.push_str(
        "<style>.tick{fill:#444;font-size:11px}.axis{fill:#222;font-size:13px}\
         .title{fill:#111;font-size:16px;font-weight:bold}.legend{fill:#222;font-size:12px}</style>\n",
    );
    let _ = writeln!(s, r##"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
    // A title wider than the picture (about 9.5 px a character at 16 px bold) is squeezed to fit.
    let room = WIDTH - 40.0;
    let fit = if title.chars().count() as f64 * 9.5 > room {
        format!(r#" textLength="{}" lengthAdjust="spacingAndGlyphs""#, n(room))
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" class="title"{fit}>{}</text>"#,
        n(WIDTH / 2.0),
        escape(title)
    );
    s
}

fn close(mut svg: String) -> String {
    svg.push_str("</svg>\n");
    svg
}

fn grid_line(svg: &mut String, x1: f64, y1: f64, x2: f64, y2: f64, minor: bool) {
    let (color, dash) = if minor { ("#eeeeee", r#" stroke-dasharray="3 3""#) } else { ("#d8d8d8", "") };
    let _ = writeln!(
        svg,
        r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="1"{dash}/>"#,
        n(x1),
        n(y1),
        n(x2),
        n(y2)
    );
}

/// The plot's border and the two axis titles.
fn frame(svg: &mut String, x_label: &str, y_label: &str) {
    let _ = writeln!(
        svg,
        r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#555555" stroke-width="1"/>"##,
        n(LEFT),
        n(TOP),
        n(PLOT_W),
        n(PLOT_H)
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis">{}</text>"#,
        n(LEFT + PLOT_W / 2.0),
        n(TOP + PLOT_H + 42.0),
        escape(x_label)
    );
    let (x, y) = (n(22.0), n(TOP + PLOT_H / 2.0));
    let _ = writeln!(
        svg,
        r#"<text x="{x}" y="{y}" text-anchor="middle" transform="rotate(-90 {x} {y})" class="axis">{}</text>"#,
        escape(y_label)
    );
}

fn draw_series(svg: &mut String, i: usize, pts: &[(f64, f64)]) {
    let color = PALETTE[i % PALETTE.len()];
    let coords: Vec<String> = pts.iter().map(|&(x, y)| format!("{},{}", n(x), n(y))).collect();
    let _ = writeln!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>"#,
        coords.join(" ")
    );
    if pts.len() <= MARKERS_UP_TO {
        for &(x, y) in pts {
            let _ = writeln!(svg, r#"<circle cx="{}" cy="{}" r="2.5" fill="{color}"/>"#, n(x), n(y));
        }
    }
}

fn legend(svg: &mut String, series: &[Series], points: &[Vec<(f64, f64)>]) {
    let x = LEFT + PLOT_W + 20.0;
    for (i, (s, pts)) in series.iter().zip(points).enumerate() {
        let y = TOP + 10.0 + i as f64 * 20.0;
        let color = PALETTE[i % PALETTE.len()];
        let mut label: String = s.label.chars().take(30).collect();
        if s.label.chars().count() > 30 {
            label.push('…');
        }
        if pts.is_empty() {
            label.push_str(" (no data)");
        }
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="3"/>"#,
            n(x),
            n(y),
            n(x + 22.0),
            n(y)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" class="legend"><title>{}</title>{}</text>"#,
            n(x + 28.0),
            n(y + 4.0),
            escape(&s.label),
            escape(&label)
        );
    }
}

fn no_data(title: &str, x_label: &str, y_label: &str) -> String {
    let mut svg = open(title);
    frame(&mut svg, x_label, y_label);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis">no data</text>"#,
        n(LEFT + PLOT_W / 2.0),
        n(TOP + PLOT_H / 2.0)
    );
    close(svg)
}

/// "90", "99", "99.9", … for 1, 2, 3, … nines.
fn percent_label(nines: u32) -> String {
    match nines {
        0 => "0".into(),
        1 => "90".into(),
        2 => "99".into(),
        n => format!("99.{}", "9".repeat(n as usize - 2)),
    }
}

/// The largest 1-2-5 × 10^k value at or below `x` (> 0).
fn step125_floor(x: f64) -> f64 {
    let decade = 10f64.powf(x.log10().floor());
    let m = x / decade;
    let m = [5.0, 2.0, 1.0].into_iter().find(|&s| m >= s * (1.0 - 1e-9)).unwrap_or(1.0);
    m * decade
}

/// The smallest 1-2-5 × 10^k value at or above `x` (> 0).
fn step125_ceil(x: f64) -> f64 {
    let decade = 10f64.powf(x.log10().floor());
    let m = x / decade;
    [1.0, 2.0, 5.0, 10.0].into_iter().find(|&s| m <= s * (1.0 + 1e-9)).unwrap_or(10.0) * decade
}

/// The 1-2-5 values from `lo` to `hi` (both 1-2-5 values), with their mantissa.
fn ticks125(lo: f64, hi: f64) -> Vec<(f64, u8)> {
    let mut out = Vec::new();
    let mut exp = lo.log10().floor() as i32;
    'outer: loop {
        for m in [1u8, 2, 5] {
            let v = f64::from(m) * 10f64.powi(exp);
            if v > hi * (1.0 + 1e-9) {
                break 'outer;
            }
            if v >= lo * (1.0 - 1e-9) {
                out.push((v, m));
            }
        }
        exp += 1;
    }
    out
}

/// A duration in µs as a tick label: "500 ns", "20 µs", "1 ms", "2 s".
fn duration_label(us: f64) -> String {
    let (v, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else if us >= 1.0 {
        (us, "µs")
    } else {
        (us * 1e3, "ns")
    };
    format!("{} {unit}", trim_number(v))
}

/// A number with at most 6 decimals and no trailing zeros.
fn trim_number(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// Round ticks covering a range: 1, 2 or 5 × 10^k apart, about five of them.
struct Ticks {
    first: f64,
    last: f64,
    step: f64,
}

fn nice_ticks(lo: f64, hi: f64) -> Ticks {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else if lo == 0.0 {
        (0.0, 1.0)
    } else {
        (lo - lo.abs() * 0.5, hi + hi.abs() * 0.5)
    };
    let raw = (hi - lo) / 5.0;
    let decade = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().find(|&s| s * decade >= raw * (1.0 - 1e-9)).unwrap_or(10.0) * decade;
    let first = (lo / step + 1e-9).floor() * step;
    let last = (hi / step - 1e-9).ceil() * step;
    Ticks { first, last, step }
}

impl Ticks {
    fn values(&self) -> Vec<f64> {
        // About five by construction; the bound only guards against float surprises.
        let count = (((self.last - self.first) / self.step).round() as i64).clamp(0, 100);
        (0..=count).map(|i| self.first + i as f64 * self.step).collect()
    }

    /// A tick value with one SI suffix for the whole axis (k, M, G) and as many decimals as the
    /// step needs.
    fn label(&self, v: f64) -> String {
        let biggest = self.first.abs().max(self.last.abs());
        let (div, suffix) = if biggest >= 1e9 {
            (1e9, "G")
        } else if biggest >= 1e6 {
            (1e6, "M")
        } else if biggest >= 1e4 {
            (1e3, "k")
        } else {
            (1.0, "")
        };
        let decimals = (-(self.step / div).log10().floor()).clamp(0.0, 6.0) as usize;
        let s = format!("{:.*}", decimals, v / div);
        let s = if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') { "0".to_string() } else { s };
        if s == "0" { s } else { format!("{s}{suffix}") }
    }
}
