//! The service's log: one named event struct per kind of line, emitted as a `tracing` event with
//! a level and typed fields, and the libraries' `log` records (librdkafka through rdkafka, pgwire,
//! datafusion-postgres, deltalake…) bridged into the same subscriber, all on stderr.
//!
//! Two formats, chosen by `--log-format` / `AUDITLAKE_LOG_FORMAT`:
//! - text, for operators' eyes and greps: `<RFC 3339 time> <LEVEL> <event> key=value …` (strings
//!   that were free text are quoted, names and numbers are bare); a library's record reads
//!   `<time> <LEVEL> <target>: <message>`;
//! - json, one object per line: `timestamp`, `level`, `target`, then the fields (`event` = the
//!   event's name, `message` for a library's record), numbers as numbers.
//!
//! Which lines are written is an `EnvFilter` from `AUDITLAKE_LOG` ([`DEFAULT_FILTER`] when unset).

use std::fmt;

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_log::NormalizeEvent;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The target of every auditlake event (`AUDITLAKE_LOG=auditlake=debug` selects them).
pub const TARGET: &str = "auditlake";

/// The filter's environment variable (EnvFilter syntax: `info,librdkafka=debug`).
pub const FILTER_ENV: &str = "AUDITLAKE_LOG";

/// Our events from `info` up; the libraries only from `warn` up: several of them (deltalake,
/// datafusion-postgres, librdkafka's notices) say routine things at `info` that would drown ours.
pub const DEFAULT_FILTER: &str = "warn,auditlake=info";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("{FILTER_ENV}: invalid filter {filter:?}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("installing the logger")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

impl LogInitError {
    /// A bad filter is the caller's; failing to install the logger (installed twice) is ours.
    pub fn fault(&self) -> auditlake_ingest::Fault {
        match self {
            LogInitError::Filter { .. } => auditlake_ingest::Fault::Caller,
            LogInitError::Install(_) => auditlake_ingest::Fault::Internal,
        }
    }
}

/// Installs the process's logger: the subscriber writing to stderr, and the `log` → `tracing`
/// bridge (at the filter's most verbose level, so disabled `log` records cost nothing). Once, at
/// start, before any library is set up: rdkafka reads the `log` level when a client is configured.
pub fn init(format: Format, filter: Option<&str>) -> Result<(), LogInitError> {
    let filter = parse_filter(filter.unwrap_or(DEFAULT_FILTER))?;
    // `try_init` installs tracing-log's `LogTracer` too (tracing-subscriber's `tracing-log` feature).
    subscriber(format, filter, std::io::stderr).try_init()?;
    Ok(())
}

pub fn parse_filter(filter: &str) -> Result<EnvFilter, LogInitError> {
    EnvFilter::try_new(filter).map_err(|source| LogInitError::Filter {
        filter: filter.to_owned(),
        source,
    })
}

/// The subscriber [`init`] installs, writing to `writer` (tests give it a buffer).
pub fn subscriber<W>(
    format: Format,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        Format::Text => Box::new(registry.with(layer.event_format(Text))),
        Format::Json => Box::new(registry.with(layer.event_format(Json))),
    }
}

/// A named log event: it emits itself as one `tracing` event (its level, `event = <name>`, and
/// its fields). Each implementation holds its own callsite, since tracing's field names are static.
pub trait Event {
    fn emit(&self);
}

pub fn emit(event: &dyn Event) {
    event.emit();
}

/// `event!(WARN, "name", key = value, …)`: a tracing event of target [`TARGET`]. Field values
/// follow tracing's rules: `&str` is free text (quoted in text logs), `%x` is a name or URL
/// shown bare, integers/floats/bools are typed (numbers in JSON).
macro_rules! event {
    ($level:ident, $name:literal $(, $($field:tt)+)?) => {
        ::tracing::event!(
            target: TARGET,
            ::tracing::Level::$level,
            event = $name
            $(, $($field)+)?
        )
    };
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A field carrying a record's own metadata: tracing-log adds `log.target`, `log.file`… to
/// bridged `log` records; they are shown as the line's target instead.
fn is_log_metadata(field: &Field) -> bool {
    field.name().starts_with("log.")
}

/// The field written bare, first: our event's name, or a library record's message.
fn is_headline(field: &Field) -> bool {
    matches!(field.name(), "event" | "message")
}

struct Text;

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        write!(writer, "{} {:>5} ", now(), meta.level().as_str())?;
        if meta.target() != TARGET {
            write!(writer, "{}: ", meta.target())?;
        }
        let mut fields = TextFields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writeln!(writer)
    }
}

/// `key=value` separated by spaces: `&str` values Debug-quoted (free text may hold spaces, `=`
/// or quotes), everything else as its Debug (numbers, bools, and `%` values' Display).
struct TextFields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl TextFields<'_, '_> {
    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() || is_log_metadata(field) {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        self.result = if is_headline(field) {
            write!(self.writer, "{separator}{value}")
        } else {
            write!(self.writer, "{separator}{}={value}", field.name())
        };
    }
}

impl Visit for TextFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if is_headline(field) {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
    }
}

struct Json;

impl<S, N> FormatEvent<S, N> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        // Built in this order (serde_json's map may sort its keys): the line reads time, level,
        // target, then the event's name and fields as they were declared.
        let mut fields = JsonFields(vec![
            ("timestamp", now().into()),
            ("level", meta.level().as_str().into()),
            ("target", meta.target().into()),
        ]);
        event.record(&mut fields);
        let mut line = String::from("{");
        for (i, (key, value)) in fields.0.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&serde_json::Value::from(*key).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

struct JsonFields(Vec<(&'static str, serde_json::Value)>);

impl JsonFields {
    fn insert(&mut self, field: &Field, value: serde_json::Value) {
        if is_log_metadata(field) {
            return;
        }
        // A library's tracing event with a field named like one of the line's own keys keeps
        // both: the field is renamed rather than making a duplicate key.
        let name = match field.name() {
            "timestamp" => "fields.timestamp",
            "level" => "fields.level",
            "target" => "fields.target",
            name => name,
        };
        self.0.push((name, value));
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, format!("{value:?}").into());
    }
}

// The events, after `event!`: a macro is in scope only below its definition.
mod events;
pub use events::*;

#[cfg(test)]
mod tests;
