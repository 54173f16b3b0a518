//! The pool-wide gate behind `poll_ready`: the number of requests queued for a connection.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

#[derive(Debug)]
pub(crate) struct ReadyGate {
    waiting: AtomicUsize,
    limit: Option<usize>,
    wakers: Mutex<Vec<Waker>>,
    has_wakers: AtomicBool,
}

impl ReadyGate {
    pub(crate) fn new(limit: Option<usize>) -> ReadyGate {
        ReadyGate {
            waiting: AtomicUsize::new(0),
            limit,
            wakers: Mutex::new(Vec::new()),
            has_wakers: AtomicBool::new(false),
        }
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    pub(crate) fn enter(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn leave(&self) {
        let before = self.waiting.fetch_sub(1, Ordering::AcqRel);
        if let Some(limit) = self.limit
            && before <= limit
            && self.has_wakers.load(Ordering::Acquire)
        {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        let wakers = {
            let mut w = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            self.has_wakers.store(false, Ordering::Release);
            std::mem::take(&mut *w)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Ready while fewer than `limit` requests wait for a connection.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(limit) = self.limit else {
            return Poll::Ready(());
        };
        if self.waiting() < limit {
            return Poll::Ready(());
        }
        {
            let mut w = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            if !w.iter().any(|x| x.will_wake(cx.waker())) {
                w.push(cx.waker().clone());
            }
            self.has_wakers.store(true, Ordering::Release);
        }
        // Check again: a waiter may have left between the first check and the registration.
        if self.waiting() < limit {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn pending_at_the_limit_and_woken_below_it() {
        let gate = ReadyGate::new(Some(2));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(gate.poll_ready(&mut cx).is_ready());
        gate.enter();
        gate.enter();
        assert!(gate.poll_ready(&mut cx).is_pending());
        gate.leave();
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(gate.poll_ready(&mut cx).is_ready());
        assert!(ReadyGate::new(None).poll_ready(&mut cx).is_ready());
    }
}
