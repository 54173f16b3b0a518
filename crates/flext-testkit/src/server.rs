//! The server handle, the accept loop and the connection tasks.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::config::{Builder, Config, Protocol};
use crate::conn::{Command, ConnCtl};
use crate::raw::Hijack;
use crate::script::{Script, ScriptError};
use crate::service::{self, Shared};
use crate::stats::{OpenConnection, Stats};
use crate::tls::Tls;

/// A real HTTP server on `127.0.0.1`, with scripted faults; see the [crate docs](crate).
///
/// Dropping the server stops it: the listener and every connection are closed.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    running: Mutex<Option<Running>>,
}

/// What the accept loop and the connection tasks share.
#[derive(Debug)]
struct Inner {
    config: Config,
    shared: Arc<Shared>,
    tls: Option<Tls>,
    /// Bumped by [`TestServer::goaway`]; each connection watches it.
    goaway: watch::Sender<u64>,
    connection_ids: AtomicU64,
}

/// A running accept loop: a way to stop it and a way to wait for it.
#[derive(Debug)]
struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// A builder to configure the server; see [`Builder`].
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// Starts a server with the default configuration: plain TCP, HTTP/1.1 and h2c.
    ///
    /// # Errors
    ///
    /// The error of binding `127.0.0.1:0`.
    pub async fn start() -> io::Result<Self> {
        Builder::new().start().await
    }

    pub(crate) async fn start_with(config: Config) -> io::Result<Self> {
        let tls = if config.tls {
            Some(Tls::generate(config.alpn())?)
        } else {
            None
        };
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            shared: Arc::new(Shared::new(&config)),
            config,
            tls,
            goaway: watch::Sender::new(0),
            connection_ids: AtomicU64::new(0),
        });
        let server = TestServer {
            addr,
            inner,
            running: Mutex::new(None),
        };
        server.serve(listener);
        tracing::debug!(%addr, "testkit server started");
        Ok(server)
    }

    fn serve(&self, listener: TcpListener) {
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(accept_loop(Arc::clone(&self.inner), listener, stop));
        // Replacing a previous loop drops its sender, which stops it.
        *crate::lock(&self.running) = Some(Running { shutdown, task });
    }

    /// The address the server listens on, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.inner.tls.is_some()
    }

    /// The URL of `path`: `http://127.0.0.1:PORT/path`, or `https://localhost:PORT/path`
    /// with TLS so that the certificate's name verifies.
    ///
    /// A missing leading `/` is added; characters not allowed in a URI are percent-encoded.
    pub fn url(&self, path: &str) -> String {
        let path = encode_path(path);
        match self.inner.tls {
            Some(_) => format!("https://localhost:{}{path}", self.addr.port()),
            None => format!("http://{}{path}", self.addr),
        }
    }

    /// [`url`](Self::url) as an [`http::Uri`].
    pub fn uri(&self, path: &str) -> http::Uri {
        // `url` encodes everything http::Uri rejects, so this cannot fail; should it ever,
        // the server's root is the least surprising answer.
        http::Uri::try_from(self.url(path)).unwrap_or_else(|_| {
            let root = self.url("/");
            http::Uri::try_from(root).unwrap_or_default()
        })
    }

    /// The PEM of the CA that signed the server's certificate, with [`Builder::tls`].
    pub fn ca_pem(&self) -> Option<&str> {
        self.inner.tls.as_ref().map(Tls::ca_pem)
    }

    /// The DER of the CA that signed the server's certificate, with [`Builder::tls`].
    pub fn ca_der(&self) -> Option<&[u8]> {
        self.inner.tls.as_ref().map(Tls::ca_der)
    }

    /// A rustls client configuration (ring provider) that trusts only this server's CA, with
    /// no ALPN set (hyper-rustls sets it), with [`Builder::tls`].
    pub fn client_tls_config(&self) -> Option<rustls::ClientConfig> {
        self.inner
            .tls
            .as_ref()
            .map(|tls| tls.client_config().clone())
    }

    /// Plays `script` for requests whose `x-testkit-id` is `id` and that carry no script
    /// header, from its first step.
    ///
    /// # Errors
    ///
    /// The parse error of `script`; nothing is installed then.
    pub fn script(&self, id: &str, script: &str) -> Result<(), ScriptError> {
        self.inner.shared.script_id(id, Script::parse(script)?);
        Ok(())
    }

    /// Plays `script` for requests to `path` that carry no script header and no scripted id,
    /// from its first step; the n-th such request plays step n.
    ///
    /// # Errors
    ///
    /// The parse error of `script`; nothing is installed then.
    pub fn script_path(&self, path: &str, script: &str) -> Result<(), ScriptError> {
        self.inner.shared.script_path(path, Script::parse(script)?);
        Ok(())
    }

    /// Removes every programmatic script and rewinds every script position.
    pub fn clear_scripts(&self) {
        self.inner.shared.clear_scripts();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.shared.counters.snapshot()
    }

    /// Zeroes the counters (not the open-connection gauge, not script positions).
    pub fn reset_stats(&self) {
        self.inner.shared.counters.reset();
    }

    /// Gracefully shuts down every open connection: HTTP/2 connections get a GOAWAY,
    /// HTTP/1.1 connections close once idle. The listener keeps accepting new connections.
    pub fn goaway(&self) {
        self.inner.goaway.send_modify(|generation| *generation += 1);
    }

    /// Closes the listener and aborts every connection; returns once they are closed and the
    /// port is free. Does nothing if the server is stopped already.
    pub async fn stop(&self) {
        let running = crate::lock(&self.running).take();
        if let Some(Running { shutdown, task }) = running {
            // An error means the loop has ended already.
            let _ = shutdown.send(());
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "testkit accept loop failed");
            }
            tracing::debug!(addr = %self.addr, "testkit server stopped");
        }
    }

    /// Stops the server if it runs, then listens on the same port again, keeping the
    /// counters, the scripts and the TLS certificates.
    ///
    /// # Errors
    ///
    /// The error of binding the port, taken by another socket meanwhile for instance.
    pub async fn restart(&self) -> io::Result<()> {
        self.stop().await;
        // tokio sets SO_REUSEADDR, so connections in TIME_WAIT do not block the bind.
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(listener);
        tracing::debug!(addr = %self.addr, "testkit server restarted");
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(running) = crate::lock(&self.running).take() {
            // Dropping the loop's future drops its JoinSet, which aborts every connection.
            running.task.abort();
        }
    }
}

/// Percent-encodes what a URI path and query may not contain, and adds a leading `/`.
fn encode_path(path: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    for (i, &b) in bytes.iter().enumerate() {
        let escape = bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        let allowed = b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/?".contains(&b)
            || (b == b'%' && escape);
        if allowed {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // Stop on a send or when the server handle is gone.
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    // Counted here, and the guard moved into the task, so that a task aborted
                    // before its first poll still counts as closed.
                    let open = inner.shared.counters.connection();
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "testkit: set_nodelay failed");
                    }
                    let goaway = inner.goaway.subscribe();
                    connections.spawn(serve_tcp(Arc::clone(&inner), tcp, goaway, open));
                }
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "testkit: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_tcp(
    inner: Arc<Inner>,
    tcp: TcpStream,
    goaway: watch::Receiver<u64>,
    _open: OpenConnection,
) {
    let ctl = Arc::new(ConnCtl::new(inner.connection_ids.fetch_add(1, Relaxed) + 1));
    let Some(tls) = &inner.tls else {
        return serve_io(&inner, tcp, inner.config.protocol, ctl, goaway).await;
    };
    let stream = match tls.acceptor.accept(tcp).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(error = %e, "testkit: tls handshake failed");
            return;
        }
    };
    inner.shared.counters.tls_handshake();
    let protocol = match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        Some(b"http/1.1") => Protocol::Http1,
        _ => inner.config.protocol,
    };
    serve_io(&inner, stream, protocol, ctl, goaway).await;
}

/// Spawns HTTP/2 stream tasks that end when their connection task ends, so that a
/// dropped connection or a stopped server leaves no task behind.
#[derive(Debug, Clone)]
struct StreamExecutor {
    connection_alive: watch::Receiver<()>,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let mut alive = self.connection_alive.clone();
        // Detached: it ends with its stream or with its connection.
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                // Errs when the connection task drops the sender.
                _ = alive.changed() => {}
            }
        });
    }
}

async fn serve_io<IO>(
    inner: &Inner,
    io: IO,
    protocol: Protocol,
    ctl: Arc<ConnCtl>,
    mut goaway: watch::Receiver<u64>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (_alive, connection_alive) = watch::channel(());
    let mut builder = auto::Builder::new(StreamExecutor { connection_alive });
    // No header read timeout: idle connections are governed by keep_alive_timeout alone.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    if let Some(max) = inner.config.max_concurrent_streams {
        builder.http2().max_concurrent_streams(max);
    }
    let builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
        Protocol::Auto => builder,
    };
    let shared = Arc::clone(&inner.shared);
    let service_ctl = Arc::clone(&ctl);
    let service =
        service_fn(move |req| service::handle(Arc::clone(&shared), Arc::clone(&service_ctl), req));
    // Hyper cannot send a malformed response; the connection task takes the socket back
    // for that.
    let (io, socket) = Hijack::new(io);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));

    let idle_timeout = inner.config.keep_alive_timeout;
    let mut idle = pin!(tokio::time::sleep(idle_timeout.unwrap_or(Duration::MAX)));
    let mut closing = false;
    let mut watching_goaway = true;
    loop {
        tokio::select! {
            // Commands first, so that a GOAWAY goes out before the response that asked for it.
            biased;
            command = ctl.command() => match command {
                // Dropping the connection closes the socket without a response.
                Command::Abort => return,
                Command::Raw(bytes) => {
                    crate::raw::write_and_close(&socket, &bytes).await;
                    return;
                }
                Command::Close => {
                    if !closing {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            },
            changed = goaway.changed(), if watching_goaway && !closing => {
                if changed.is_ok() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                } else {
                    watching_goaway = false;
                }
            }
            () = ctl.became_idle(), if !closing && idle_timeout.is_some() => {
                let timeout = idle_timeout.unwrap_or(Duration::MAX);
                if let Some(deadline) = ctl.idle_deadline(timeout) {
                    idle.as_mut().reset(deadline);
                }
            }
            () = &mut idle, if !closing && idle_timeout.is_some() => {
                let timeout = idle_timeout.unwrap_or(Duration::MAX);
                match ctl.idle_deadline(timeout) {
                    Some(deadline) if deadline <= Instant::now() => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Some(deadline) => idle.as_mut().reset(deadline),
                    // Busy: became_idle will set the deadline again.
                    None => idle.as_mut().reset(far_future()),
                }
            }
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "testkit: connection error");
                }
                return;
            }
        }
    }
}

/// A deadline that never comes in a test's lifetime.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

#[cfg(test)]
mod tests {
    use super::encode_path;

    #[test]
    fn encodes_what_a_uri_rejects() {
        assert_eq!(encode_path("/a/b?c=d&e"), "/a/b?c=d&e");
        assert_eq!(encode_path("x y"), "/x%20y");
        assert_eq!(encode_path("/%41%zz"), "/%41%25zz");
        assert_eq!(encode_path("/é#"), "/%C3%A9%23");
        assert_eq!(encode_path(""), "/");
        for path in ["/a b", "{}", "/\u{0}", "%", "/ü?ß=1"] {
            let url = format!("http://127.0.0.1:1{}", encode_path(path));
            assert!(http::Uri::try_from(url).is_ok(), "{path}");
        }
    }
}
