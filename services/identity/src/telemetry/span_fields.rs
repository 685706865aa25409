//! How the JSON log layer writes a span's fields: straight into the JSON
//! text it keeps for the span.
//!
//! tracing-subscriber's own `JsonFields` builds a map of `serde_json`
//! values for every span it opens and serialises it, and parses and
//! re-serialises the whole object for each later `record`. Every RPC opens
//! a span, so that was a steady few per cent of the server's CPU under
//! ValidateToken load (perf). The text written here is the same JSON object
//! (the event formatter parses it back when a line is logged inside the
//! span); a field recorded twice appears twice, and JSON readers, that
//! formatter included, keep the last.

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// The span-field formatter of the JSON log layer.
pub struct SpanFields;

impl<'writer> FormatFields<'writer> for SpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        writer.write_char('{')?;
        let mut pairs = Pairs::new(&mut writer, true);
        fields.record(&mut pairs);
        pairs.result?;
        writer.write_char('}')
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let text = &mut current.fields;
        if text.pop() != Some('}') {
            // Nothing written yet (or not by us): start the object afresh.
            text.clear();
            text.push('{');
        }
        let first = text.len() == 1;
        let mut pairs = Pairs::new(text, first);
        fields.record(&mut pairs);
        let result = pairs.result;
        text.push('}');
        result
    }
}

/// Writes `"name":value` pairs, comma-separated.
struct Pairs<'a, W: Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: Write> Pairs<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        Pairs {
            out,
            first,
            result: Ok(()),
        }
    }

    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.out.write_char(',')?;
            }
            string(self.out, field.name())?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl<W: Write> Visit for Pairs<'_, W> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; serde_json writes them as null.
        self.pair(field, |out| {
            if value.is_finite() {
                write!(out, "{value}")
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |out| string(out, value));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.pair(field, |out| {
            out.write_char('[')?;
            for (i, byte) in value.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write!(out, "{byte}")?;
            }
            out.write_char(']')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |out| {
            out.write_char('"')?;
            write!(Escaping(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// `text` as a JSON string.
fn string(out: &mut impl Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaping(out).write_str(text)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaping<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Every byte that needs escaping is ASCII, so it is a char boundary;
        // method names and addresses have none and go out in one piece.
        let mut plain = 0;
        for (i, byte) in text.bytes().enumerate() {
            let escaped = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..0x20 => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..i])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// What a line logged inside a span shows of the span, with `ours` or
    /// tracing-subscriber's own formatter.
    fn span_as_logged(ours: bool) -> serde_json::Value {
        let captured = Captured::default();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(captured.clone());
        let log = || {
            let span = tracing::info_span!(
                "rpc",
                otel.name = "identity.v1.AuthService/Login",
                client.address = %"203.0.113.9",
                quoted = "a \"quoted\" \\ back\nslash\u{1}\u{7f} é ✓",
                debugged = ?"debug \"text\"",
                count = 42_u64,
                delta = -7_i64,
                ratio = 0.25_f64,
                flag = true,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            span.record("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
            span.record("span_id", tracing::field::display("00f067aa0ba902b7"));
            span.in_scope(|| tracing::info!("inside"));
        };
        if ours {
            let subscriber = tracing_subscriber::registry().with(layer.fmt_fields(SpanFields));
            tracing::subscriber::with_default(subscriber, log);
        } else {
            let subscriber = tracing_subscriber::registry().with(layer);
            tracing::subscriber::with_default(subscriber, log);
        }
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
        line["span"].clone()
    }

    #[test]
    fn spans_are_logged_exactly_as_tracing_subscribers_own_formatter_logs_them() {
        let ours = span_as_logged(true);
        assert_eq!(ours, span_as_logged(false));
        assert_eq!(ours["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ours["span_id"], "00f067aa0ba902b7");
        assert_eq!(ours["quoted"], "a \"quoted\" \\ back\nslash\u{1}\u{7f} é ✓");
    }
}
