//! [`CliError`]: what can end a command, and the exit status each gives.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::Path;

/// Exit status of a failed request (no response, or its body could not be read).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit status of invalid arguments, as clap uses.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit status of `--fail` on an HTTP status of 400 or more, as curl uses.
pub(crate) const EXIT_HTTP_STATUS: u8 = 22;

/// Why a command failed. Printed on one line as `flext: <message>`.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The arguments were accepted by the parser but cannot work together.
    Usage(String),
    /// The client could not be built from the arguments (an invalid setting).
    Setup(flext_api::Error),
    /// The request failed: no response, or its body could not be read.
    Request(flext_api::Error),
    /// `--fail` was given and the response status was 400 or more.
    HttpStatus(flext_api::Error),
    /// A local file or stream could not be read or written.
    Io {
        /// What was being done, like `writing the body to out.bin`.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The demo's embedded server could not be started or restarted.
    Demo(io::Error),
}

impl CliError {
    /// An I/O error while `what`.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> CliError {
        CliError::Io {
            what: what.into(),
            source,
        }
    }

    /// An I/O error on a file.
    pub(crate) fn file(doing: &str, path: &Path, source: io::Error) -> CliError {
        CliError::io(format!("{doing} {}", path.display()), source)
    }

    /// The exit status for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Setup(_) => EXIT_USAGE,
            CliError::Request(e) if e.is_builder() || e.is_request() => EXIT_USAGE,
            CliError::HttpStatus(_) => EXIT_HTTP_STATUS,
            CliError::Request(_) | CliError::Io { .. } | CliError::Demo(_) => EXIT_FAILURE,
        }
    }

    /// The `error_kind` written to `--stats-json`, when the error concerns the request.
    pub(crate) fn kind_label(&self) -> &'static str {
        match self {
            CliError::Usage(_) => "usage",
            CliError::Setup(e) | CliError::Request(e) | CliError::HttpStatus(e) => e.kind_label(),
            CliError::Io { .. } => "io",
            CliError::Demo(_) => "demo",
        }
    }
}

/// The innermost cause of an error, when it says more than the error itself.
fn root_cause(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur = e.source()?;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    (!text.is_empty() && !e.to_string().contains(&text)).then_some(text)
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(msg) => f.write_str(msg),
            CliError::Setup(e) => write!(f, "{e}"),
            CliError::Request(e) | CliError::HttpStatus(e) => {
                write!(f, "{} error: {e}", e.kind_label())?;
                if let Some(cause) = root_cause(e) {
                    write!(f, ": {cause}")?;
                }
                Ok(())
            }
            CliError::Io { what, source } => write!(f, "io error: {what}: {source}"),
            CliError::Demo(e) => write!(f, "demo server: {e}"),
        }
    }
}

impl StdError for CliError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            CliError::Usage(_) => None,
            CliError::Setup(e) | CliError::Request(e) | CliError::HttpStatus(e) => Some(e),
            CliError::Io { source, .. } | CliError::Demo(source) => Some(source),
        }
    }
}
