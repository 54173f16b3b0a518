//! flext-auth over real HTTP: a hyper-util client, the testkit's echo server, and the capture
//! of every `tracing` event of the suite at TRACE, checked for secrets at the end of each test.

mod common;
mod oauth2;
mod refresh;
mod scope;
mod static_kinds;
mod unauthorized;
