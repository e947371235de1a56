//! The Prometheus text exposition format (version 0.0.4): metric families
//! described as data, and the one writer every series goes through.
//!
//! The writer escapes every label value and the help text, and formats
//! non-finite and very large floats the way Prometheus parses them, so no
//! caller can produce an unparseable exposition whatever names a config
//! holds.

use std::fmt::Write as _;

use crate::label::label_enum;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

label_enum! {
    /// The `# TYPE` of a family.
    pub enum MetricType {
        Counter = "counter",
        Gauge = "gauge",
        Histogram = "histogram",
    }
}

/// One metric family: everything about it but its samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
    /// Label names, in the order they are written. A histogram's `le` is
    /// implied.
    pub labels: &'static [&'static str],
}

/// A sample value.
pub trait SampleValue {
    fn write_to(&self, out: &mut String);
}

impl SampleValue for u64 {
    fn write_to(&self, out: &mut String) {
        write_u64(out, *self);
    }
}

impl SampleValue for i64 {
    fn write_to(&self, out: &mut String) {
        if *self < 0 {
            out.push('-');
        }
        write_u64(out, self.unsigned_abs());
    }
}

/// Decimal digits without the formatting machinery: most of the 550,000
/// samples of a large exposition are small integers, and `write!` was a
/// third of the render time.
fn write_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // The buffer holds ASCII digits only.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
}

impl SampleValue for f64 {
    fn write_to(&self, out: &mut String) {
        write_float(out, *self);
    }
}

/// Go's ParseFloat spellings for the specials; exponent notation outside
/// the range where plain digits stay short (`{}` writes 1e308 as 309 digits).
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v != 0.0 && !(1e-6..1e15).contains(&v.abs()) {
        let _ = write!(out, "{v:e}");
    } else if v.fract() == 0.0 {
        // Integral and below 1e15: exact as an integer, and much faster.
        if v < 0.0 {
            out.push('-');
        }
        write_u64(out, v.abs() as u64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Appends `v` escaped as a label value: backslash, double quote and line
/// feed are the three characters the format escapes.
fn push_escaped(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text escapes backslash and line feed only.
fn push_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes families and their samples into one text buffer.
pub struct TextWriter {
    out: String,
}

impl TextWriter {
    pub fn with_capacity(bytes: usize) -> Self {
        TextWriter {
            out: String::with_capacity(bytes),
        }
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// `# HELP` and `# TYPE` of a family; once, before its samples.
    pub fn family(&mut self, f: &Family) {
        self.out.push_str("# HELP ");
        self.out.push_str(f.name);
        self.out.push(' ');
        push_help(&mut self.out, f.help);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(f.name);
        self.out.push(' ');
        self.out.push_str(f.kind.as_str());
        self.out.push('\n');
    }

    /// One sample of a counter or gauge; `values` pair with `f.labels`.
    pub fn sample(&mut self, f: &Family, values: &[&str], v: impl SampleValue) {
        self.series(f, "", values, None, v);
    }

    /// Every series of one histogram: `counts` are the non-cumulative counts
    /// per bucket of `bounds`, then one more for `+Inf`.
    pub fn histogram(
        &mut self,
        f: &Family,
        values: &[&str],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        debug_assert_eq!(counts.len(), bounds.len() + 1);
        let mut cumulative = 0;
        let mut le = String::new();
        for (i, bound) in bounds.iter().enumerate() {
            cumulative += counts[i];
            le.clear();
            write_float(&mut le, *bound);
            self.series(f, "_bucket", values, Some(&le), cumulative);
        }
        cumulative += counts.get(bounds.len()).copied().unwrap_or(0);
        self.series(f, "_bucket", values, Some("+Inf"), cumulative);
        self.series(f, "_sum", values, None, sum);
        self.series(f, "_count", values, None, cumulative);
    }

    fn series(
        &mut self,
        f: &Family,
        suffix: &str,
        values: &[&str],
        le: Option<&str>,
        v: impl SampleValue,
    ) {
        debug_assert_eq!(values.len(), f.labels.len(), "{}", f.name);
        let out = &mut self.out;
        out.push_str(f.name);
        out.push_str(suffix);
        if !f.labels.is_empty() || le.is_some() {
            out.push('{');
            let mut first = true;
            let pairs = f.labels.iter().zip(values).map(|(n, v)| (*n, *v));
            for (name, value) in pairs.chain(le.map(|l| ("le", l))) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(name);
                out.push_str("=\"");
                push_escaped(out, value);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        v.write_to(out);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Family = Family {
        name: "x_total",
        kind: MetricType::Counter,
        help: "Help with a \\ backslash\nand a line feed.",
        labels: &["a", "b"],
    };

    #[test]
    fn escapes_label_values_and_help() {
        let mut w = TextWriter::with_capacity(0);
        w.family(&F);
        w.sample(&F, &["q\"uote", "back\\slash\nnewline ünï"], 3u64);
        assert_eq!(
            w.finish(),
            "# HELP x_total Help with a \\\\ backslash\\nand a line feed.\n\
             # TYPE x_total counter\n\
             x_total{a=\"q\\\"uote\",b=\"back\\\\slash\\nnewline ünï\"} 3\n"
        );
    }

    #[test]
    fn floats_use_prometheus_spellings() {
        let cases = [
            (0.0, "0"),
            (10.0, "10"),
            (0.25, "0.25"),
            (-2.5, "-2.5"),
            (-3.0, "-3"),
            (999_999_999_999_999.0, "999999999999999"),
            (1e15, "1e15"),
            (-0.0, "0"),
            (1e308, "1e308"),
            (1.5e-9, "1.5e-9"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (v, want) in cases {
            let mut s = String::new();
            write_float(&mut s, v);
            assert_eq!(s, want, "{v}");
            if v.is_finite() {
                assert_eq!(s.parse::<f64>().unwrap(), v);
            }
        }
    }

    #[test]
    fn integers_are_plain_decimal() {
        let u = |v: u64| {
            let mut s = String::new();
            v.write_to(&mut s);
            s
        };
        let i = |v: i64| {
            let mut s = String::new();
            v.write_to(&mut s);
            s
        };
        assert_eq!(u(0), "0");
        assert_eq!(u(7), "7");
        assert_eq!(u(1234567890), "1234567890");
        assert_eq!(u(u64::MAX), u64::MAX.to_string());
        assert_eq!(i(-1), "-1");
        assert_eq!(i(i64::MIN), i64::MIN.to_string());
        assert_eq!(i(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn histogram_is_cumulative_with_inf_sum_and_count() {
        const H: Family = Family {
            name: "h_seconds",
            kind: MetricType::Histogram,
            help: "H.",
            labels: &["e"],
        };
        let mut w = TextWriter::with_capacity(0);
        w.histogram(&H, &["x"], &[0.1, 1.0], &[1, 2, 3], 7.5);
        assert_eq!(
            w.finish(),
            "h_seconds_bucket{e=\"x\",le=\"0.1\"} 1\n\
             h_seconds_bucket{e=\"x\",le=\"1\"} 3\n\
             h_seconds_bucket{e=\"x\",le=\"+Inf\"} 6\n\
             h_seconds_sum{e=\"x\"} 7.5\n\
             h_seconds_count{e=\"x\"} 6\n"
        );
    }

    #[test]
    fn unlabelled_sample_has_no_braces() {
        const G: Family = Family {
            name: "g",
            kind: MetricType::Gauge,
            help: "G.",
            labels: &[],
        };
        let mut w = TextWriter::with_capacity(0);
        w.sample(&G, &[], -1i64);
        assert_eq!(w.finish(), "g -1\n");
    }
}
