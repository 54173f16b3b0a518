//! What more than one test file of this crate needs.

use std::io;
use std::sync::{Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

/// A `fmt` layer's writer into a buffer: the log lines as a user's subscriber would write
/// them.
#[derive(Clone, Copy)]
pub struct Capture(pub &'static Mutex<Vec<u8>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        *self
    }
}
