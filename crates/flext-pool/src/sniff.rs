//! A read-side HTTP/2 frame sniffer: learns the peer's `SETTINGS_MAX_CONCURRENT_STREAMS`,
//! sees a GOAWAY before h2 reports it, and counts the frames and DATA bytes read (for the
//! connection driver's keep-alive and window sizing).
//!
//! The IO under the HTTP/2 connection is wrapped in [`Sniff`], which passes every byte
//! through unchanged and feeds the bytes it read to a [`FrameSniffer`]. The sniffer follows
//! frame boundaries (a 9-byte header: 24-bit length, type, flags, 31-bit stream id) and only
//! looks inside SETTINGS and GOAWAY payloads, so its cost is per frame, not per byte.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

const FRAME_HEADER_LEN: usize = 9;
const TYPE_DATA: u8 = 0x0;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_GOAWAY: u8 = 0x7;
const FLAG_ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// What the sniffer learnt about an HTTP/2 connection; shared with the pool.
#[derive(Debug)]
pub(crate) struct PeerState {
    /// The peer's last `SETTINGS_MAX_CONCURRENT_STREAMS`; `u32::MAX` while it named none.
    max_concurrent_streams: AtomicU32,
    /// Number of SETTINGS frames (not ACKs) seen.
    settings_frames: AtomicU64,
    /// A GOAWAY arrived: the connection takes no new streams.
    goaway: AtomicBool,
    /// A GOAWAY with an error code other than `NO_ERROR` arrived: not a graceful close.
    goaway_error: AtomicBool,
    /// Woken at the first SETTINGS frame, at a GOAWAY and when the connection ends.
    changed: Notify,
    /// Frames read, of any kind: the connection's driver reads it to tell an idle
    /// connection (keep-alive pings) from a busy one. Written by the sniffer only, in the
    /// driver's task.
    frames: AtomicU64,
    /// DATA payload bytes read: the driver's bandwidth-delay samples.
    data_bytes: AtomicU64,
    /// The driver closed the connection because a keep-alive PING went unanswered.
    ping_timed_out: AtomicBool,
    /// The pool dropped its last handle on the connection.
    released: AtomicBool,
}

impl PeerState {
    pub(crate) fn new() -> Arc<PeerState> {
        Arc::new(PeerState {
            max_concurrent_streams: AtomicU32::new(u32::MAX),
            settings_frames: AtomicU64::new(0),
            goaway: AtomicBool::new(false),
            goaway_error: AtomicBool::new(false),
            changed: Notify::new(),
            frames: AtomicU64::new(0),
            data_bytes: AtomicU64::new(0),
            ping_timed_out: AtomicBool::new(false),
            released: AtomicBool::new(false),
        })
    }

    /// The peer's limit, `None` while it has named none (RFC 9113: unlimited).
    pub(crate) fn max_concurrent_streams(&self) -> Option<u32> {
        match self.max_concurrent_streams.load(Ordering::Acquire) {
            u32::MAX => None,
            n => Some(n),
        }
    }

    pub(crate) fn settings_seen(&self) -> bool {
        self.settings_frames.load(Ordering::Acquire) > 0
    }

    pub(crate) fn goaway(&self) -> bool {
        self.goaway.load(Ordering::Acquire)
    }

    /// Whether the peer is closing the connection gracefully: it sent a GOAWAY, and every
    /// GOAWAY whose error code has been read so far says `NO_ERROR` (a restart or a drain,
    /// not a failure).
    pub(crate) fn graceful_goaway(&self) -> bool {
        self.goaway() && !self.goaway_error.load(Ordering::Acquire)
    }

    /// Waits for the first SETTINGS frame, a GOAWAY or [`PeerState::wake`].
    pub(crate) async fn wait_settings(&self) {
        loop {
            let notified = self.changed.notified();
            if self.settings_seen() || self.goaway() {
                return;
            }
            notified.await;
            // A wake without settings means the connection ended; the caller checks.
            if !self.settings_seen() {
                return;
            }
        }
    }

    /// Frames read so far.
    pub(crate) fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// DATA payload bytes read so far.
    pub(crate) fn data_bytes(&self) -> u64 {
        self.data_bytes.load(Ordering::Relaxed)
    }

    /// Whether the connection was closed for an unanswered keep-alive PING.
    pub(crate) fn ping_timed_out(&self) -> bool {
        self.ping_timed_out.load(Ordering::Acquire)
    }

    pub(crate) fn set_ping_timed_out(&self) {
        self.ping_timed_out.store(true, Ordering::Release);
    }

    /// Whether the pool dropped its last handle on the connection.
    pub(crate) fn released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    pub(crate) fn set_released(&self) {
        self.released.store(true, Ordering::Release);
    }

    /// Wakes whoever waits for the settings (the connection ended).
    pub(crate) fn wake(&self) {
        self.changed.notify_one();
    }
}

/// A frame parser fed with the bytes a peer sends, in reads of any size.
#[derive(Debug)]
pub(crate) struct FrameSniffer {
    peer: Arc<PeerState>,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    remaining: usize,
    kind: Payload,
    /// A SETTINGS entry (6 bytes) split across reads; the first 8 bytes of a GOAWAY
    /// (last stream id, error code).
    entry: [u8; 8],
    entry_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Skip,
    Settings,
    GoAway,
}

impl FrameSniffer {
    pub(crate) fn new(peer: Arc<PeerState>) -> FrameSniffer {
        FrameSniffer {
            peer,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            remaining: 0,
            kind: Payload::Skip,
            entry: [0; 8],
            entry_len: 0,
        }
    }

    /// Feeds bytes read from the peer, in order.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining == 0 && self.header_len < FRAME_HEADER_LEN {
                let take = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.start_frame();
                }
                continue;
            }
            let take = self.remaining.min(bytes.len());
            match self.kind {
                Payload::Settings => self.settings_bytes(&bytes[..take]),
                Payload::GoAway => self.goaway_bytes(&bytes[..take]),
                Payload::Skip => {}
            }
            bytes = &bytes[take..];
            self.remaining -= take;
            if self.remaining == 0 {
                self.end_frame();
            }
        }
    }

    fn start_frame(&mut self) {
        let h = &self.header;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        self.remaining = len;
        // One writer (this sniffer, in the connection's task): a load and a store, no
        // locked read-modify-write.
        let frames = &self.peer.frames;
        frames.store(frames.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if kind == TYPE_DATA {
            let bytes = &self.peer.data_bytes;
            bytes.store(
                bytes.load(Ordering::Relaxed) + len as u64,
                Ordering::Relaxed,
            );
        }
        self.entry_len = 0;
        self.kind = if kind == TYPE_SETTINGS && flags & FLAG_ACK == 0 {
            Payload::Settings
        } else {
            Payload::Skip
        };
        if kind == TYPE_GOAWAY {
            // No new streams from now on, whatever the payload says; its error code tells a
            // graceful close from a failure.
            self.kind = Payload::GoAway;
            self.peer.goaway.store(true, Ordering::Release);
            self.peer.changed.notify_one();
        }
        if len == 0 {
            self.end_frame();
        }
    }

    fn settings_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = (6 - self.entry_len).min(bytes.len());
            self.entry[self.entry_len..self.entry_len + take].copy_from_slice(&bytes[..take]);
            self.entry_len += take;
            bytes = &bytes[take..];
            if self.entry_len == 6 {
                self.entry_len = 0;
                let id = u16::from_be_bytes([self.entry[0], self.entry[1]]);
                if id == SETTINGS_MAX_CONCURRENT_STREAMS {
                    let value = u32::from_be_bytes([
                        self.entry[2],
                        self.entry[3],
                        self.entry[4],
                        self.entry[5],
                    ]);
                    // u32::MAX stands for "none named"; a peer naming it means the same.
                    self.peer
                        .max_concurrent_streams
                        .store(value, Ordering::Release);
                }
            }
        }
    }

    fn goaway_bytes(&mut self, bytes: &[u8]) {
        if self.entry_len >= 8 {
            // Last stream id and error code read; the debug data that may follow is skipped.
            return;
        }
        let take = (8 - self.entry_len).min(bytes.len());
        self.entry[self.entry_len..self.entry_len + take].copy_from_slice(&bytes[..take]);
        self.entry_len += take;
        if self.entry_len == 8 {
            let code =
                u32::from_be_bytes([self.entry[4], self.entry[5], self.entry[6], self.entry[7]]);
            if code != 0 {
                self.peer.goaway_error.store(true, Ordering::Release);
            }
        }
    }

    fn end_frame(&mut self) {
        if self.kind == Payload::GoAway && self.entry_len < 8 {
            // A GOAWAY too short to hold its error code is malformed: not graceful.
            self.peer.goaway_error.store(true, Ordering::Release);
        }
        if self.kind == Payload::Settings {
            let before = self.peer.settings_frames.fetch_add(1, Ordering::AcqRel);
            if before == 0 {
                self.peer.changed.notify_one();
            }
        }
        self.header_len = 0;
        self.kind = Payload::Skip;
    }
}

pin_project_lite::pin_project! {
    /// An IO wrapper that shows every byte read to a [`FrameSniffer`] and changes none.
    #[derive(Debug)]
    pub(crate) struct Sniff<T> {
        #[pin]
        io: T,
        sniffer: FrameSniffer,
    }
}

impl<T> Sniff<T> {
    pub(crate) fn new(io: T, peer: Arc<PeerState>) -> Sniff<T> {
        Sniff {
            io,
            sniffer: FrameSniffer::new(peer),
        }
    }
}

impl<T: AsyncRead> AsyncRead for Sniff<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.io.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.sniffer.feed(&buf.filled()[before..]);
        }
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for Sniff<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings(entries: &[(u16, u32)]) -> Vec<u8> {
        let mut payload = Vec::new();
        for (id, value) in entries {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        frame(TYPE_SETTINGS, 0, 0, &payload)
    }

    #[test]
    fn reads_settings_split_byte_by_byte() {
        let peer = PeerState::new();
        let mut s = FrameSniffer::new(peer.clone());
        let mut bytes = settings(&[(0x1, 4096), (0x3, 10), (0x4, 65535)]);
        bytes.extend(frame(0x0, 0x1, 1, b"hello"));
        for b in &bytes {
            s.feed(std::slice::from_ref(b));
        }
        assert_eq!(peer.max_concurrent_streams(), Some(10));
        assert!(peer.settings_seen());
        assert!(!peer.goaway());
    }

    #[test]
    fn ack_is_not_settings_and_goaway_is_seen() {
        let peer = PeerState::new();
        let mut s = FrameSniffer::new(peer.clone());
        s.feed(&frame(TYPE_SETTINGS, FLAG_ACK, 0, &[]));
        assert!(!peer.settings_seen());
        s.feed(&frame(TYPE_GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
        assert!(peer.goaway());
        assert!(peer.graceful_goaway());
        assert_eq!(peer.max_concurrent_streams(), None);
        // A second GOAWAY with INTERNAL_ERROR: no longer a graceful close.
        s.feed(&frame(TYPE_GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 2, b'x']));
        assert!(peer.goaway() && !peer.graceful_goaway());
    }

    #[test]
    fn a_goaway_too_short_for_its_error_code_is_not_graceful() {
        let peer = PeerState::new();
        let mut s = FrameSniffer::new(peer.clone());
        s.feed(&frame(TYPE_GOAWAY, 0, 0, &[0, 0, 0, 1]));
        assert!(peer.goaway() && !peer.graceful_goaway());
    }

    #[derive(Debug, Clone)]
    enum F {
        Settings(Vec<(u16, u32)>),
        SettingsAck,
        Data(Vec<u8>),
        Other(u8, Vec<u8>),
        /// Error code and debug data.
        GoAway(u32, Vec<u8>),
    }

    fn any_frame() -> impl Strategy<Value = F> {
        prop_oneof![
            proptest::collection::vec((prop_oneof![Just(0x3u16), 0u16..8], 0u32..u32::MAX), 0..6)
                .prop_map(F::Settings),
            Just(F::SettingsAck),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(F::Data),
            (
                prop_oneof![Just(0x1u8), Just(0x3), Just(0x6), Just(0x8), Just(0x9)],
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(t, p)| F::Other(t, p)),
            (
                prop_oneof![Just(0u32), Just(0u32), 1u32..14],
                proptest::collection::vec(any::<u8>(), 0..20)
            )
                .prop_map(|(code, debug)| F::GoAway(code, debug)),
        ]
    }

    proptest! {
        #[test]
        fn finds_the_value_whatever_the_read_boundaries(
            frames in proptest::collection::vec(any_frame(), 0..20),
            cuts in proptest::collection::vec(1usize..64, 1..200),
        ) {
            let mut bytes = Vec::new();
            let mut expect_mcs = None;
            let mut expect_settings = 0u64;
            let mut expect_goaway = false;
            let mut expect_goaway_error = false;
            for f in &frames {
                match f {
                    F::Settings(entries) => {
                        bytes.extend(settings(entries));
                        expect_settings += 1;
                        for (id, v) in entries {
                            if *id == 0x3 {
                                expect_mcs = Some(*v);
                            }
                        }
                    }
                    F::SettingsAck => bytes.extend(frame(TYPE_SETTINGS, FLAG_ACK, 0, &[])),
                    F::Data(p) => bytes.extend(frame(0x0, 0, 1, p)),
                    F::Other(t, p) => bytes.extend(frame(*t, 0, 3, p)),
                    F::GoAway(code, debug) => {
                        let mut payload = vec![0, 0, 0, 5];
                        payload.extend_from_slice(&code.to_be_bytes());
                        payload.extend_from_slice(debug);
                        bytes.extend(frame(TYPE_GOAWAY, 0, 0, &payload));
                        expect_goaway = true;
                        expect_goaway_error |= *code != 0;
                    }
                }
            }
            let peer = PeerState::new();
            let mut s = FrameSniffer::new(peer.clone());
            let mut rest = &bytes[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                s.feed(&rest[..n]);
                rest = &rest[n..];
                i += 1;
            }
            prop_assert_eq!(peer.max_concurrent_streams(), expect_mcs.filter(|v| *v != u32::MAX));
            prop_assert_eq!(peer.settings_frames.load(Ordering::Relaxed), expect_settings);
            prop_assert_eq!(peer.goaway(), expect_goaway);
            prop_assert_eq!(peer.graceful_goaway(), expect_goaway && !expect_goaway_error);
        }

        #[test]
        fn passes_every_byte_through(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            chunk in 1usize..300,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut a, b) = tokio::io::duplex(chunk);
                let writer = {
                    let data = data.clone();
                    async move {
                        a.write_all(&data).await.unwrap();
                        drop(a);
                    }
                };
                let reader = async move {
                    let mut sniffed = Sniff::new(b, PeerState::new());
                    let mut out = Vec::new();
                    sniffed.read_to_end(&mut out).await.unwrap();
                    out
                };
                let ((), out) = tokio::join!(writer, reader);
                assert_eq!(out, data);
            });
        }
    }
}
