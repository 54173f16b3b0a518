//! # flext-retry
//!
//! `RetryLayer` will wrap any `tower::Service<http::Request<B>>` and retry what is safe to retry:
//! requests that were never sent for any method, transient failures (408, 429, 5xx, resets,
//! timeouts) for idempotent requests, with exponential backoff and full jitter, `Retry-After`,
//! a retry budget shared by all clones, deadlines, and replay of streamed request bodies up
//! to a cap.
//!
//! **Status:** this crate is a placeholder. It holds no code yet; its issue comes after the
//! workspace foundation, and nothing here pretends to work until then.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
