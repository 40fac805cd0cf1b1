//! The SVG plot of `neurofit bench`: for every sweep, runtime against size on log-log axes per
//! device and dtype with the power-law fit of the large-size points (dashed), and the speedup over
//! the CPU (f64) at each size.

use super::{power_law, Record};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One plotted series: label, (size, value) points, optional power-law fit (exponent, coefficient).
type Series = (String, Vec<(f64, f64)>, Option<(f64, f64)>);

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const PW: f64 = 440.0;
const PH: f64 = 260.0;
const ML: f64 = 70.0;
const MT: f64 = 40.0;

struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn new(vals: impl Iterator<Item = f64>, log: bool) -> Axis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in vals.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            lo = 1.0;
            hi = 10.0;
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
        } else {
            lo = lo.min(0.0);
            hi = if hi <= lo { lo + 1.0 } else { hi * 1.1 };
        }
        Axis { lo, hi, log }
    }
    fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            (a..=b).map(|e| 10f64.powi(e)).collect()
        } else {
            (0..=4)
                .map(|i| self.lo + (self.hi - self.lo) * i as f64 / 4.0)
                .collect()
        }
    }
}

fn fmt_tick(v: f64) -> String {
    if !(1e-2..1e4).contains(&v) {
        format!("{v:.0e}")
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}

/// Where a panel goes and how it is labelled.
struct Panel<'a> {
    /// Top-left corner.
    x0: f64,
    y0: f64,
    title: &'a str,
    xlabel: &'a str,
    ylabel: &'a str,
    /// Logarithmic y axis.
    ylog: bool,
    /// Draw the y = 1 line.
    unity: bool,
}

fn panel(svg: &mut String, p: &Panel, series: &[Series]) {
    let Panel {
        x0,
        y0,
        title,
        xlabel,
        ylabel,
        ylog,
        unity,
    } = *p;
    let xa = Axis::new(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)), true);
    let ya = Axis::new(
        series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .chain(unity.then_some(1.0)),
        ylog,
    );
    let px = |v: f64| x0 + ML + xa.frac(v) * PW;
    let py = |v: f64| y0 + MT + (1.0 - ya.frac(v)) * PH;
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        x0 + ML,
        y0 + 22.0,
        title
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{}" y="{}" width="{PW}" height="{PH}" fill="none" stroke="#444"/>"##,
        x0 + ML,
        y0 + MT
    );
    for t in xa.ticks() {
        let x = px(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            y0 + MT,
            y0 + MT + PH,
            y0 + MT + PH + 14.0,
            fmt_tick(t)
        );
    }
    for t in ya.ticks() {
        let y = py(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>"##,
            x0 + ML,
            x0 + ML + PW,
            x0 + ML - 4.0,
            y + 3.0,
            fmt_tick(t)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        x0 + ML + PW / 2.0,
        y0 + MT + PH + 30.0,
        xlabel
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
        x0 + 18.0,
        y0 + MT + PH / 2.0,
        x0 + 18.0,
        y0 + MT + PH / 2.0,
        ylabel
    );
    if unity {
        let y = py(1.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#888" stroke-dasharray="2,3"/>"##,
            x0 + ML,
            x0 + ML + PW
        );
    }
    for (i, (name, pts, fit)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .filter(|p| p.1.is_finite() && (!ylog || p.1 > 0.0))
            .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
            .collect();
        if path.len() > 1 {
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                path.join(" ")
            );
        }
        for p in path {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>"#);
        }
        let mut label = name.clone();
        if let Some((e, coef)) = fit {
            let (a, b) = (xa.lo, xa.hi);
            let (ya0, yb0) = (coef * a.powf(*e), coef * b.powf(*e));
            if ya0 > 0.0 && yb0 > 0.0 {
                let clamp = |v: f64| v.clamp(ya.lo, ya.hi);
                let _ = writeln!(
                    svg,
                    r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-dasharray="5,4" opacity="0.6"/>"#,
                    px(a),
                    py(clamp(ya0)),
                    px(b),
                    py(clamp(yb0))
                );
            }
            label = format!("{name}  ∝ N^{e:.2}");
        }
        let ly = y0 + MT + 14.0 + 14.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{c}"/><text x="{}" y="{}" font-size="10">{}</text>"#,
            x0 + ML + PW + 10.0,
            ly - 9.0,
            x0 + ML + PW + 24.0,
            ly,
            label.replace('&', "&amp;").replace('<', "&lt;")
        );
    }
}

/// Renders every sweep of `records` as an SVG document.
pub fn svg(records: &[Record]) -> String {
    let mut kernels: Vec<String> = Vec::new();
    for r in records {
        if r.kernel != "ridge_fit" && !kernels.contains(&r.kernel) {
            kernels.push(r.kernel.clone());
        }
    }
    let row_h = MT + PH + 60.0;
    let col_w = ML + PW + 230.0;
    let (w, h) = (2.0 * col_w, row_h * kernels.len().max(1) as f64 + 30.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#
    );
    s.push('\n');
    for (row, k) in kernels.iter().enumerate() {
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut size_param = String::new();
        for r in records
            .iter()
            .filter(|r| &r.kernel == k && r.error.is_none())
        {
            size_param = r.size_param.clone();
            series
                .entry(format!("{} {}", r.device, r.dtype))
                .or_default()
                .push((r.size, r.median_s));
        }
        let cpu: BTreeMap<u64, f64> = records
            .iter()
            .filter(|r| &r.kernel == k && r.device == "cpu" && r.error.is_none())
            .map(|r| (r.size.to_bits(), r.median_s))
            .collect();
        let runtime: Vec<Series> = series
            .iter()
            .map(|(n, p)| (n.clone(), p.clone(), power_law(p)))
            .collect();
        let speedup: Vec<Series> = series
            .iter()
            .map(|(n, p)| {
                let pts = p
                    .iter()
                    .filter_map(|(sz, t)| cpu.get(&sz.to_bits()).map(|c| (*sz, c / t)))
                    .collect();
                (n.clone(), pts, None)
            })
            .collect();
        let y0 = 10.0 + row as f64 * row_h;
        let title = format!("{k}: wall time (incl. transfers)");
        let p = Panel {
            x0: 0.0,
            y0,
            title: &title,
            xlabel: &size_param,
            ylabel: "seconds",
            ylog: true,
            unity: false,
        };
        panel(&mut s, &p, &runtime);
        let title = format!("{k}: speedup over CPU f64");
        let p = Panel {
            x0: col_w,
            title: &title,
            ylabel: "× faster than CPU",
            unity: true,
            ..p
        };
        panel(&mut s, &p, &speedup);
    }
    s.push_str("</svg>\n");
    s
}
