//! # flext-trace
//!
//! `TraceLayer` will emit OpenTelemetry-conformant client spans (one logical span per call and one
//! per attempt), redact secrets from URLs, propagate W3C trace context and record request metrics.
//!
//! **Status:** this crate is a placeholder. It holds no code yet; its issue comes after the
//! workspace foundation, and nothing here pretends to work until then.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
