//! The command's logs: to standard error as JSON lines (each with the span of its request, and
//! its ID) for machines or as text for a person at a terminal, and the newest warnings and
//! errors kept for the operator's console.

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::Arc;

use enfeed::domain::recent_errors::{LoggedError, RecentErrors};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

/// Starts logging at the level of ENFEED_LOG (default `info`); returns where warnings and
/// errors are kept.
pub fn init(format: LogFormat) -> Arc<RecentErrors> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("ENFEED_LOG").unwrap_or_else(|_| "info".into());
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = if json {
        lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        lines.with_ansi(terminal).boxed()
    };
    let recent = Arc::new(RecentErrors::default());
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(KeepErrors(recent.clone()))
        .init();
    recent
}

/// Records every warning and error in [`RecentErrors`].
struct KeepErrors(Arc<RecentErrors>);

impl<S: tracing::Subscriber> Layer<S> for KeepErrors {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let level = *event.metadata().level();
        // Less severe levels compare greater.
        if level > tracing::Level::WARN {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.0.record(LoggedError {
            at,
            level: level.to_string(),
            message: text.0,
        });
    }
}

/// An event's message and fields as one line: `message key=value ...`.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = match field.name() {
            "message" => write!(self.0, "{value:?}"),
            name => write!(self.0, "{name}={value:?}"),
        };
    }
}
