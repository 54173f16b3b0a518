//! # flext-api
//!
//! The facade: a `Client` that stacks every flext layer with production defaults over the pooled
//! hyper client, with a builder, typed errors, JSON helpers, health and metrics snapshots.
//!
//! **Status:** this crate is a placeholder. It holds no code yet; its issue comes after the
//! workspace foundation, and nothing here pretends to work until then.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
