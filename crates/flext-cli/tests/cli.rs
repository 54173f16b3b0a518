//! The `flext` binary run as a process against flext-testkit servers started here.

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use flext_testkit::TestServer;
use serde_json::Value;
use tokio::process::Command;

/// Runs `flext` with `args` and waits for it.
async fn flext(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flext"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the flext binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A path in the temp dir no other test (or test run) uses; removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempFile(
            std::env::temp_dir().join(format!("flext-cli-test-{}-{n}-{name}", std::process::id())),
        )
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a utf-8 temp path")
    }

    fn json(&self) -> Value {
        let text = std::fs::read_to_string(&self.0).expect("the file was written");
        serde_json::from_str(&text).expect("the file holds json")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_retries_through_503_503_200_and_reports_three_attempts() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let stats = TempFile::new("stats.json");
    let out = flext(&[
        "request",
        &server.url("/items/1"),
        "-H",
        "x-testkit-id: t1",
        "-H",
        "x-testkit-script: 503,503,200",
        "--stats-json",
        stats.path(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ok");
    let s = stats.json();
    assert_eq!(s["status"], 200);
    assert_eq!(s["attempts"], 3);
    assert_eq!(s["protocol"], "HTTP/1.1");
    assert!(s["elapsed_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(s["error_kind"], Value::Null);
    assert_eq!(s["retries"][0]["after"], "503");
    assert_eq!(server.stats().requests_for_id("t1"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_exits_non_zero_on_404_and_prints_no_body() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let url = server.url("/missing");
    let stats = TempFile::new("fail.json");
    let out = flext(&[
        "request",
        &url,
        "--fail",
        "-H",
        "x-testkit-script: 404",
        "--stats-json",
        stats.path(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(22), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    let s = stats.json();
    assert_eq!(
        (s["status"].as_u64(), s["error_kind"].as_str()),
        (Some(404), Some("status"))
    );

    // Without --fail a 404 is a response like any other.
    let out = flext(&["request", &url, "-H", "x-testkit-script: 404"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_cacert_speaks_http2_and_without_it_fails_as_tls() {
    let server = TestServer::builder().tls().start().await.unwrap();
    let ca = TempFile::new("ca.pem");
    std::fs::write(&ca.0, server.ca_pem().unwrap()).unwrap();
    let stats = TempFile::new("tls.json");
    let out = flext(&[
        "request",
        &server.url("/secure"),
        "--cacert",
        ca.path(),
        "-i",
        "--stats-json",
        stats.path(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("HTTP/2 200 OK\r\n"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).ends_with("\r\n\r\nok"), "{}", stdout(&out));
    assert_eq!(stats.json()["protocol"], "HTTP/2");

    let stats = TempFile::new("untrusted.json");
    let out = flext(&[
        "request",
        &server.url("/secure"),
        "--stats-json",
        stats.path(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stats.json()["error_kind"], "tls");
    assert!(
        stderr(&out).starts_with("flext: tls error: "),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_a_connect_error() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let url = server.url("/gone");
    server.stop().await;
    let stats = TempFile::new("refused.json");
    let out = flext(&["request", &url, "--stats-json", stats.path()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = stats.json();
    assert_eq!(s["error_kind"], "connect");
    assert_eq!(s["status"], Value::Null);
    assert!(s["attempts"].as_u64().unwrap() >= 1);
    assert!(s["error"].as_str().unwrap().contains("connect"), "{s}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("flext: connect error: "), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_headers_body_and_credentials_reach_the_server() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let body = TempFile::new("echo.json");
    let out = flext(&[
        "request",
        &server.url("/echo"),
        "-X",
        "PUT",
        "--json",
        r#"{"qty": 2}"#,
        "--bearer",
        "s3cr3t",
        "--api-key",
        "x-api-key: k3y",
        "-H",
        "x-testkit-script: echo",
        "-o",
        body.path(),
        "-v",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let echo = body.json();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["body"], r#"{"qty": 2}"#);
    let header = |name: &str| {
        echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_string())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("authorization").as_deref(), Some("Bearer s3cr3t"));
    assert_eq!(header("x-api-key").as_deref(), Some("k3y"));
    // -v describes the call without showing the secrets.
    let verbose = stderr(&out);
    assert!(verbose.contains("> PUT "), "{verbose}");
    assert!(verbose.contains("< HTTP/1.1 200 OK"), "{verbose}");
    assert!(
        !verbose.contains("s3cr3t") && !verbose.contains("k3y"),
        "{verbose}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_give_usage_and_never_panic() {
    for args in [
        &["request"][..],
        &["request", "not a url"],
        &["request", "ftp://example.com/"],
        &["request", "http://127.0.0.1:1/", "--timeout", "soon"],
        &["request", "http://127.0.0.1:1/", "--retries", "11"],
        &["request", "http://127.0.0.1:1/", "-H", "no colon"],
        &[
            "request",
            "http://127.0.0.1:1/",
            "-d",
            "@/nonexistent/flext-body",
        ],
        &[
            "request",
            "http://127.0.0.1:1/",
            "--http1",
            "--http2-prior-knowledge",
        ],
        &["bench", "http://127.0.0.1:1/", "-c", "0"],
        &["demo", "--duration", "1s"],
        &["frobnicate"],
    ] {
        let out = flext(args).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("Usage:"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A setting flext-api refuses is an argument error too.
    let out = flext(&[
        "request",
        "http://127.0.0.1:1/",
        "--timeout",
        "1s",
        "--attempt-timeout",
        "2s",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("attempt_timeout"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_against_a_healthy_server_makes_every_request_without_errors() {
    let server = TestServer::builder().http1().start().await.unwrap();
    let out = flext(&[
        "bench",
        &server.url("/load"),
        "-n",
        "200",
        "-c",
        "8",
        "--json",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).expect("one json object");
    assert_eq!(r["requests"], 200);
    assert_eq!(r["succeeded"], 200);
    assert_eq!(r["errors"], 0);
    assert_eq!(r["status_counts"]["200"], 200);
    assert_eq!(r["retries"], 0);
    assert_eq!(r["circuit_open_rejections"], 0);
    let opened = r["connections_opened"].as_u64().unwrap();
    assert!((1..=8).contains(&opened), "{r}");
    assert!(r["throughput_rps"].as_f64().unwrap() > 0.0);
    for key in ["p50", "p90", "p99", "max"] {
        assert!(r["latency_ms"][key].as_f64().unwrap() > 0.0, "{key}: {r}");
    }
    let stats = server.stats();
    assert_eq!(stats.requests_for_path("/load"), 200);
    assert_eq!(stats.connections_accepted, opened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_retries_absorbing_faults_and_the_breaker_failing_fast() {
    let out = flext(&["demo", "--duration", "6s", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_str(&stdout(&out)).expect("one json object");
    let phase = |name: &str| {
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no phase {name}: {r}"))
            .clone()
    };
    let healthy = phase("healthy");
    assert_eq!(healthy["failed"], 0, "{healthy}");

    let faults = phase("faults");
    assert!(faults["faults_injected"].as_u64().unwrap() > 0, "{faults}");
    assert!(faults["retries"].as_u64().unwrap() > 0, "{faults}");
    assert!(faults["success_pct"].as_f64().unwrap() > 95.0, "{faults}");

    let outage = phase("outage");
    assert!(
        outage["circuit_open_rejections"].as_u64().unwrap() > 0,
        "{outage}"
    );
    assert_eq!(outage["breaker_state"], "open", "{outage}");

    let recovery = phase("recovery");
    assert!(recovery["succeeded"].as_u64().unwrap() > 0, "{recovery}");
    assert_eq!(recovery["breaker_state"], "closed", "{recovery}");
    assert_eq!(r["protocol"], "HTTP/2");
}
