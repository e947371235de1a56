//! Log setup: logfmt (default) or JSON on stderr.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Logfmt,
    Json,
}

/// Install the global subscriber. Later calls (tests) are no-ops.
pub fn init(level: tracing::Level, format: Format) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match format {
        Format::Json => builder.json().flatten_event(true).try_init(),
        Format::Logfmt => builder.event_format(Logfmt).try_init(),
    };
}

/// `ts=... level=info msg="..." key=value`, as Prometheus' own logs.
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(
            w,
            "ts={} level={} target={}",
            humantime::format_rfc3339_millis(std::time::SystemTime::now()),
            meta.level().as_str().to_ascii_lowercase(),
            meta.target()
        )?;
        let mut v = Fields { out: String::new() };
        event.record(&mut v);
        writeln!(w, "{}", v.out)
    }
}

struct Fields {
    out: String,
}

impl Fields {
    fn push(&mut self, key: &str, value: &str) {
        let key = if key == "message" { "msg" } else { key };
        self.out.push(' ');
        self.out.push_str(key);
        self.out.push('=');
        if !value.is_empty() && !value.contains([' ', '"', '=', '\n', '\t']) {
            self.out.push_str(value);
        } else {
            self.out.push('"');
            for c in value.chars() {
                match c {
                    '"' => self.out.push_str("\\\""),
                    '\\' => self.out.push_str("\\\\"),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field.name(), &format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_when_needed() {
        let mut f = Fields { out: String::new() };
        f.push("message", "probe failed");
        f.push("endpoint", "a-b");
        f.push("detail", "say \"hi\"");
        assert_eq!(
            f.out,
            r#" msg="probe failed" endpoint=a-b detail="say \"hi\"""#
        );
    }
}
