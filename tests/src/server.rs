//! A [`TestServer`] on a runtime of its own, so that the client's runtime holds only the
//! client's tasks (a scenario counts them to find leaks) and the server's work is not
//! scheduled between the client's.

use std::fmt;
use std::io;
use std::sync::Arc;

use flext_testkit::{Builder, TestServer};
use tokio::runtime::Runtime;

/// A test server running on its own multi-threaded tokio runtime.
pub struct ServerThread {
    server: Arc<TestServer>,
    runtime: Option<Runtime>,
}

impl fmt::Debug for ServerThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerThread")
            .field("addr", &self.server.addr())
            .finish_non_exhaustive()
    }
}

impl ServerThread {
    /// Starts the server `builder` describes on a new runtime with `threads` workers.
    ///
    /// # Errors
    ///
    /// The error of building the runtime or of starting the server.
    pub async fn start(builder: Builder, threads: usize) -> Result<ServerThread, crate::Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("testkit-server")
            .enable_all()
            .build()?;
        let server = runtime.spawn(builder.start()).await??;
        Ok(ServerThread {
            server: Arc::new(server),
            runtime: Some(runtime),
        })
    }

    /// The server.
    pub fn server(&self) -> &TestServer {
        &self.server
    }

    /// [`TestServer::stop`], on the server's runtime.
    pub async fn stop(&self) {
        let server = Arc::clone(&self.server);
        if let Some(rt) = &self.runtime {
            // A panic in stop would be the testkit's bug; pass it on.
            if let Err(e) = rt.spawn(async move { server.stop().await }).await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }

    /// [`TestServer::restart`], on the server's runtime (the listener must be registered
    /// with that runtime's reactor).
    ///
    /// # Errors
    ///
    /// The error of binding the port again.
    pub async fn restart(&self) -> io::Result<()> {
        let server = Arc::clone(&self.server);
        match &self.runtime {
            Some(rt) => match rt.spawn(async move { server.restart().await }).await {
                Ok(result) => result,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            },
            None => Ok(()),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        // Blocking on the runtime's shutdown is not allowed inside the caller's runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
