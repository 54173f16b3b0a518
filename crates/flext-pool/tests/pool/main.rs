//! flext-pool over real sockets, against flext-testkit servers.

mod common;
#[cfg(feature = "hickory-dns")]
mod dns;
mod h1;
mod h2;
mod never_sent;
mod proxy;
mod tls;
