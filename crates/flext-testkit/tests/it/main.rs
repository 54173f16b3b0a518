//! Integration tests: real sockets, real hyper clients.

mod faults;
mod h2;
mod lifecycle;
mod malformed;
mod scripts;
mod support;
mod tls;
