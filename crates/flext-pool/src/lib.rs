//! # flext-pool
//!
//! `PoolLayer` will turn a connector (a `tower::Service<http::Uri>` yielding an IO) into a pooled
//! `tower::Service<http::Request<B>>` speaking HTTP/1.1 and HTTP/2 over hyper's connections, with
//! per-origin limits, keep-alive, HTTP/2 multiplexing over more than one connection when streams
//! run out, typed errors that say whether a request was sent, and metrics.
//!
//! **Status:** this crate is a placeholder. It holds no code yet; its issue comes after the
//! workspace foundation, and nothing here pretends to work until then.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
