//! Serves a client's health report (`/health`, JSON) and metrics (`/metrics`, Prometheus
//! text) from a small hyper server, while the client sends traffic to a flaky test server.
//!
//! ```sh
//! cargo run -p flext-api --example health_server            # then, in another shell:
//! curl -s localhost:9898/health | jq . ; curl -s localhost:9898/metrics
//! ```
//!
//! It runs for 60 seconds (or the number of seconds given as its first argument), on
//! loopback only.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use flext_api::Client;
use flext_testkit::{RandomFaults, TestServer};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);

    // Traffic: a test server that answers 503 to one request in ten.
    let upstream = TestServer::builder()
        .random_faults(RandomFaults {
            seed: 7,
            p_503: 0.1,
            ..RandomFaults::default()
        })
        .start()
        .await?;
    let client = Client::builder().base_url(&upstream.url("/")).build()?;
    let traffic = client.clone();
    tokio::spawn(async move {
        loop {
            if let Ok(res) = traffic.get("items").send().await {
                let _ = res.bytes().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let listener = TcpListener::bind("127.0.0.1:9898").await?;
    println!("health on http://127.0.0.1:9898/health, metrics on /metrics, for {seconds} s");
    let serve = async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let client = client.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let client = client.clone();
                    async move {
                        let (status, kind, body) = match req.uri().path() {
                            "/health" => (
                                200,
                                "application/json",
                                serde_json::to_string_pretty(&client.health())
                                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
                            ),
                            "/metrics" => (200, "text/plain; version=0.0.4", client.metrics_text()),
                            _ => (404, "text/plain", "try /health or /metrics\n".to_string()),
                        };
                        let mut res = http::Response::new(Full::new(Bytes::from(body)));
                        *res.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                        res.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(kind),
                        );
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(seconds), serve).await;
    Ok(())
}
