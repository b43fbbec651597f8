//! A latency CDF as a small SVG: log-scale x axis (latency), linear y axis
//! (fraction of deliveries at or below), one polyline per series.

use std::fmt::Write;

use super::hist::Hist;

const W: f64 = 760.0;
const H: f64 = 420.0;
const L: f64 = 70.0; // left margin
const R: f64 = 20.0;
const T: f64 = 40.0;
const B: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

pub fn cdf_plot(title: &str, series: &[(String, &Hist)]) -> String {
    let (mut lo, mut hi) = (f64::MAX, 0f64);
    for (_, h) in series {
        for (x, _) in h.cdf() {
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    if hi <= 0.0 {
        lo = 1e3;
        hi = 1e6;
    }
    // Decades of nanoseconds that enclose the data.
    let d0 = lo.max(1.0).log10().floor();
    let d1 = hi.max(10.0).log10().ceil().max(d0 + 1.0);
    let px = |ns: f64| L + (ns.max(1.0).log10() - d0) / (d1 - d0) * (W - L - R);
    let py = |f: f64| T + (1.0 - f) * (H - T - B);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"#,
        W / 2.0,
        escape(title)
    );
    // Grid: decades on x, tenths on y.
    let mut d = d0;
    while d <= d1 + 1e-9 {
        let x = px(10f64.powf(d));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{}" stroke="#ddd"/>"##,
            H - B
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            H - B + 18.0,
            label(10f64.powf(d))
        );
        d += 1.0;
    }
    for i in 0..=10 {
        let f = i as f64 / 10.0;
        let y = py(f);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eee"/>"##,
            W - R
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{:.1}</text>"#,
            L - 6.0,
            y + 4.0,
            f
        );
    }
    for (q, name) in [(0.99, "p99"), (0.999, "p999")] {
        let y = py(q);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#999" stroke-dasharray="4 3"/><text x="{}" y="{:.1}" fill="#666">{name}</text>"##,
            W - R,
            W - R - 30.0,
            y - 3.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        W - L - R,
        H - T - B
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">latency (log scale)</text>"#,
        (L + W - R) / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">fraction ≤ latency</text>"#,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0
    );
    for (i, (name, h)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts = String::new();
        let mut prev = 0.0;
        for (x, f) in h.cdf() {
            let _ = write!(
                pts,
                "{:.1},{:.1} {:.1},{:.1} ",
                px(x),
                py(prev),
                px(x),
                py(f)
            );
            prev = f;
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{pts}"/>"#
        );
        let ly = T + 16.0 + i as f64 * 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{} (n={}, p50 {}, p99 {}, p999 {})</text>"#,
            L + 10.0,
            L + 30.0,
            L + 36.0,
            ly + 4.0,
            escape(name),
            h.n,
            label(h.quantile(0.5) as f64),
            label(h.quantile(0.99) as f64),
            label(h.quantile(0.999) as f64)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// "850 ns", "12 µs", "3.4 ms", "2 s".
pub fn label(ns: f64) -> String {
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    if v >= 100.0 || v == v.round() {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
