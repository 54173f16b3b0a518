//! HTTP/2 on the `h2` crate directly.
//!
//! hyper's HTTP/2 client sends each request through a channel to the connection's task,
//! which spawns one more task per request to wait for the response and hands it back through
//! a oneshot. Three tasks and two cross-thread wake-ups per request: on two cores that was
//! about a sixth of the pool's throughput and two thirds of its one-at-a-time latency
//! (`docs/benchmarks.md`). Here the caller's task opens the stream itself on
//! `h2::client::SendRequest` (the clone its connection keeps for the thread: see
//! `H2::open_kept`), and the connection's task wakes it when the response comes.
//!
//! What hyper did around `h2` and is done here instead:
//!
//! - [`open`]: connection-specific headers stripped, `content-length` set from an exact body
//!   size, the request body written under flow control in the caller's task (the rest in a
//!   task of its own when the response comes first). `CONNECT` (a tunnel through the
//!   connection) is refused with a typed error: the pool does not keep such streams open.
//! - [`RecvBody`]: the response body, its flow-control window released as it is read.
//! - [`Driver`]: the connection's task, with keep-alive PINGs and the adaptive (BDP) window.

mod body;
mod driver;
mod send;

use std::time::Duration;

use bytes::Bytes;

pub(crate) use body::RecvBody;
pub(crate) use driver::{Driver, run};
pub(crate) use send::{Exchange, open};

use crate::config::Config;

/// The flow-control windows with a fixed size: hyper's, 5 MiB for the connection and 2 MiB
/// per stream, so that one stream does not stall on a link with a large bandwidth-delay
/// product.
const CONN_WINDOW: u32 = 5 * 1024 * 1024;
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// RFC 9113's initial window, where the adaptive window starts.
const SPEC_WINDOW: u32 = 65_535;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// Streams opened before the server's SETTINGS names its limit (the spec's recommended
/// minimum, so that the first burst is not refused).
const INITIAL_MAX_SEND_STREAMS: usize = 100;
/// Streams reset locally for errors before the connection is given up (h2's guard against
/// a peer provoking resets).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// What the connection's driver does besides reading and writing frames.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pings {
    pub(crate) keep_alive: Option<KeepAlive>,
    pub(crate) adaptive_window: bool,
}

/// Keep-alive PINGs: one after `interval` without a frame read, the connection closed when
/// its answer takes longer than `timeout`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepAlive {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
}

/// The h2 client builder for `config`, and what its driver does.
pub(crate) fn builder(config: &Config) -> (h2::client::Builder, Pings) {
    let mut b = h2::client::Builder::new();
    let (conn_window, stream_window) = if config.http2_adaptive_window {
        (SPEC_WINDOW, SPEC_WINDOW)
    } else {
        (CONN_WINDOW, STREAM_WINDOW)
    };
    b.initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
        .initial_window_size(stream_window)
        .initial_connection_window_size(conn_window)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .enable_push(false);
    let pings = Pings {
        keep_alive: config.http2_keep_alive_interval.map(|interval| KeepAlive {
            interval,
            timeout: config.http2_keep_alive_timeout,
        }),
        adaptive_window: config.http2_adaptive_window,
    };
    (b, pings)
}

/// The sender type the pool keeps per connection.
pub(crate) type SendRequest = h2::client::SendRequest<Bytes>;
