//! [`RetryError`], the error of a request after the layer gave up, and [`ConfigError`].

use std::error::Error as StdError;
use std::fmt;

use flext_core::BoxError;

use crate::info::{RetryInfo, StopReason};

/// The error of the last attempt, with what the layer did before returning it.
///
/// [`source`](StdError::source) is the inner service's error, so
/// [`TransportError::find`](flext_core::TransportError::find) and other walks of the chain see
/// through it.
///
/// ```
/// use flext_core::{BoxError, TransportError};
/// use flext_retry::RetryError;
///
/// # fn check(err: RetryError) {
/// if let Some(transport) = TransportError::find(&err) {
///     println!("{} after {} attempts", transport.kind(), err.info().attempts());
/// }
/// # }
/// ```
pub struct RetryError {
    inner: BoxError,
    info: RetryInfo,
}

impl RetryError {
    pub(crate) fn new(inner: BoxError, info: RetryInfo) -> RetryError {
        RetryError { inner, info }
    }

    /// What the layer did: attempts, waits, and why it stopped.
    pub fn info(&self) -> &RetryInfo {
        &self.info
    }

    /// Why the error was returned rather than retried, if it was a failure the layer
    /// considered.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.info.stop_reason()
    }

    /// Whether the retry budget was empty.
    pub fn is_budget_exhausted(&self) -> bool {
        self.stop_reason() == Some(StopReason::BudgetExhausted)
    }

    /// The inner service's error.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.inner
    }

    /// The inner service's error, by value.
    pub fn into_inner(self) -> BoxError {
        self.inner
    }

    /// The inner error and the info.
    pub fn into_parts(self) -> (BoxError, RetryInfo) {
        (self.inner, self.info)
    }
}

impl fmt::Debug for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryError")
            .field("inner", &self.inner)
            .field("attempts", &self.info.attempts())
            .field("stop_reason", &self.info.stop_reason())
            .finish()
    }
}

impl fmt::Display for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.info.attempts();
        write!(
            f,
            "request failed after {n} attempt{}",
            if n == 1 { "" } else { "s" }
        )?;
        match self.info.stop_reason() {
            Some(reason) => write!(f, " ({reason})"),
            None => Ok(()),
        }
    }
}

impl StdError for RetryError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.inner)
    }
}

/// A configuration the builder refused, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: String) -> ConfigError {
        ConfigError { message }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid retry configuration: {}", self.message)
    }
}

impl StdError for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;
    use flext_core::TransportError;

    #[test]
    fn transport_errors_are_found_through_it() {
        let inner: BoxError = TransportError::refused(None).into();
        let mut info = RetryInfo::new();
        info.stop(Some(StopReason::BudgetExhausted));
        let err = RetryError::new(inner, info);
        assert!(TransportError::find(&err).unwrap().is_refused());
        assert!(err.is_budget_exhausted());
        assert_eq!(
            err.to_string(),
            "request failed after 1 attempt (retry budget exhausted)"
        );
        let boxed: BoxError = err.into();
        assert!(TransportError::find(&*boxed).is_some());
    }
}
