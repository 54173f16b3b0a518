//! # flext-auth
//!
//! `AuthLayer` will attach credentials (bearer, basic, API keys, refreshable tokens such as OAuth 2.0
//! client credentials) to requests bound for the origins they are scoped to, refresh tokens ahead
//! of expiry with a single flight, and replay a request once after a 401.
//!
//! **Status:** this crate is a placeholder. It holds no code yet; its issue comes after the
//! workspace foundation, and nothing here pretends to work until then.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]
