//! flext-pool over real sockets, against flext-testkit servers.

mod common;
mod h1;
mod h2;
mod never_sent;
mod proxy;
mod tls;
