//! The command line, parsed by clap; every value is checked here, so that a bad argument ends
//! with clap's message and usage (exit status 2), never a panic.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Uri};

use crate::duration;

/// flext: a resilient HTTP client on the command line.
///
/// Every request goes through the flext stack: retries with a budget, a circuit breaker per
/// origin, timeouts, tracing and a pooled HTTP/1.1 + HTTP/2 connection pool.
#[derive(Debug, Parser)]
#[command(
    name = "flext",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Print the stack's tracing events (breaker transitions, retries) on stderr at this
    /// level: error, warn, info, debug or trace.
    #[arg(long, global = true, value_name = "LEVEL", hide_possible_values = true)]
    pub(crate) log: Option<LogLevel>,

    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Send one request through the full stack, like curl, and print the body.
    Request(Box<RequestArgs>),
    /// Load-test a URL through the full stack and report throughput, latency, retries.
    Bench(BenchArgs),
    /// Run the stack against an embedded flaky server and report what each layer did.
    Demo(DemoArgs),
}

/// Levels for `--log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings: circuits opening, among others.
    Warn,
    /// Informational events: circuits closing, among others.
    Info,
    /// Debug events: each retry, half-open probes.
    Debug,
    /// Everything.
    Trace,
}

/// Connection and timeout options shared by `request` and `bench`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnArgs {
    /// Speak HTTP/1.1 only.
    #[arg(long, conflicts_with = "http2_prior_knowledge")]
    pub(crate) http1: bool,

    /// Speak HTTP/2 without negotiation, also over plain http (h2c).
    #[arg(long)]
    pub(crate) http2_prior_knowledge: bool,

    /// Trust the CA certificates in this PEM file, as well as the bundled web roots.
    #[arg(long, value_name = "PEM_FILE", value_parser = pem_file)]
    pub(crate) cacert: Option<PemFile>,

    /// Accept any server certificate. For development only.
    #[arg(short = 'k', long)]
    pub(crate) insecure: bool,

    /// Total time for a call, retries and backoff included [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub(crate) timeout: Option<Duration>,

    /// Time for one attempt [default: 10s, or the total timeout if shorter].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub(crate) attempt_timeout: Option<Duration>,
}

/// `flext request`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  flext request https://httpbin.org/get -v
  flext request -X PUT https://api.example.com/items/7 --json '{\"qty\": 2}' --bearer \"$TOKEN\"
  flext request https://api.example.com/report -o report.csv --fail --stats-json stats.json")]
pub(crate) struct RequestArgs {
    /// The URL, http:// or https://.
    #[arg(value_parser = url_arg)]
    pub(crate) url: String,

    /// The method [default: GET, or POST with -d or --json].
    #[arg(short = 'X', long = "request", value_name = "METHOD", value_parser = method_arg)]
    pub(crate) method: Option<Method>,

    /// A request header, `Name: value`; repeat it for more.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = header_arg)]
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,

    /// A request body: the text itself, `@FILE`, or `@-` for stdin, sent as is.
    #[arg(short = 'd', long = "data", value_name = "DATA", value_parser = data_arg)]
    pub(crate) data: Option<Bytes>,

    /// A JSON body (text, `@FILE` or `@-`); sets Content-Type and Accept to application/json.
    #[arg(long, value_name = "DATA", value_parser = data_arg, conflicts_with = "data")]
    pub(crate) json: Option<Bytes>,

    /// A bearer token for this request (sent as a sensitive header, never logged).
    #[arg(long, value_name = "TOKEN", conflicts_with = "basic")]
    pub(crate) bearer: Option<String>,

    /// HTTP Basic credentials.
    #[arg(long, value_name = "USER:PASS", value_parser = user_pass_arg)]
    pub(crate) basic: Option<(String, String)>,

    /// An API key sent in a header, like `x-api-key:s3cr3t`.
    #[arg(long = "api-key", value_name = "HEADER:VALUE", value_parser = api_key_arg)]
    pub(crate) api_key: Option<(HeaderName, String)>,

    /// Retries after the first attempt, 0 to 10; 0 turns retrying off [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10))]
    pub(crate) retries: Option<u32>,

    /// An Idempotency-Key header: the server deduplicates by it, so even a POST is retried.
    #[arg(long, value_name = "KEY", value_parser = header_value_arg)]
    pub(crate) idempotency_key: Option<String>,

    /// Connection and timeout options.
    #[command(flatten)]
    pub(crate) conn: ConnArgs,

    /// Write the body to this file instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,

    /// Print the response head (status line and headers) before the body.
    #[arg(short = 'i', long = "include")]
    pub(crate) include: bool,

    /// Describe the call on stderr: headers, attempts, protocol, timings, breaker and pool.
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,

    /// Exit with status 22, printing no body, when the HTTP status is 400 or more.
    #[arg(short = 'f', long)]
    pub(crate) fail: bool,

    /// Write a JSON summary of the call to this file: status, attempts, protocol, elapsed_ms,
    /// and error_kind and error on failure.
    #[arg(long, value_name = "FILE")]
    pub(crate) stats_json: Option<PathBuf>,
}

/// `flext bench`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  flext bench http://127.0.0.1:8080/ -n 10000 -c 64
  flext bench https://localhost:8443/items -z 30s -c 32 --cacert ca.pem --json")]
pub(crate) struct BenchArgs {
    /// The URL, http:// or https://.
    #[arg(value_parser = url_arg)]
    pub(crate) url: String,

    /// Requests to send [default: 200 when no --duration is given].
    #[arg(short = 'n', long = "requests", value_name = "REQUESTS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) requests: Option<u64>,

    /// Requests in flight at once.
    #[arg(short = 'c', long, value_name = "CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) concurrency: u32,

    /// Stop starting requests after this long (with -n too: whichever comes first).
    #[arg(short = 'z', long, value_name = "DURATION", value_parser = positive_duration_arg)]
    pub(crate) duration: Option<Duration>,

    /// The method.
    #[arg(short = 'X', long = "request", value_name = "METHOD", value_parser = method_arg,
          default_value = "GET")]
    pub(crate) method: Method,

    /// A request header, `Name: value`; repeat it for more.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = header_arg)]
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,

    /// Turn retrying off.
    #[arg(long)]
    pub(crate) no_retry: bool,

    /// Turn the circuit breaker off.
    #[arg(long)]
    pub(crate) no_breaker: bool,

    /// Print the report as one JSON object (and no progress bar).
    #[arg(long)]
    pub(crate) json: bool,

    /// Connection and timeout options.
    #[command(flatten)]
    pub(crate) conn: ConnArgs,
}

/// `flext demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How long the story takes; the phases and the breaker's open time scale with it
    /// (4s to 10m).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = demo_duration_arg)]
    pub(crate) duration: Duration,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,

    /// Seed of the choice of requests that meet a fault.
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub(crate) seed: u64,
}

/// A PEM file read when the arguments are parsed, so a missing file is a usage error.
#[derive(Debug, Clone)]
pub(crate) struct PemFile {
    /// Where it was read from.
    pub(crate) path: PathBuf,
    /// Its contents.
    pub(crate) pem: Bytes,
}

impl Cli {
    /// Parses the process's arguments. On an error, prints clap's message with the usage of
    /// the command at fault and exits with status 2; `--help` and `--version` exit with 0.
    pub(crate) fn parse_or_exit() -> Cli {
        match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) if !e.use_stderr() => e.exit(),
            Err(e) => {
                eprint!(
                    "{}",
                    with_usage(&e.render().to_string(), std::env::args().nth(1))
                );
                std::process::exit(i32::from(crate::error::EXIT_USAGE));
            }
        }
    }
}

/// clap's error `text`, with the usage of `subcommand` (or of `flext`) when it has none:
/// clap leaves it out of errors about a value.
fn with_usage(text: &str, subcommand: Option<String>) -> String {
    if text.contains("Usage:") {
        return text.to_string();
    }
    let mut cmd = Cli::command();
    cmd.build();
    let usage = match subcommand
        .and_then(|name| cmd.find_subcommand_mut(&name).map(|c| c.render_usage()))
    {
        Some(usage) => usage,
        None => cmd.render_usage(),
    };
    let hint = "For more information";
    match text.find(hint) {
        Some(at) => format!("{}{usage}\n\n{}", &text[..at], &text[at..]),
        None => format!("{text}\n{usage}\n"),
    }
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    duration::parse(s).map_err(|e| e.to_string())
}

fn positive_duration_arg(s: &str) -> Result<Duration, String> {
    match duration_arg(s)? {
        d if d.is_zero() => Err("must be above zero".into()),
        d => Ok(d),
    }
}

fn demo_duration_arg(s: &str) -> Result<Duration, String> {
    let d = duration_arg(s)?;
    if d < Duration::from_secs(4) || d > Duration::from_secs(600) {
        return Err(format!(
            "must be between 4s and 10m, not {}",
            duration::format(d)
        ));
    }
    Ok(d)
}

fn url_arg(s: &str) -> Result<String, String> {
    let uri: Uri = s.parse().map_err(|e| format!("not a valid url: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("unsupported scheme {other:?}; use http or https")),
        None => return Err("the url needs a scheme, like https://example.com/".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the url needs a host".into());
    }
    Ok(s.to_string())
}

fn method_arg(s: &str) -> Result<Method, String> {
    Method::from_bytes(s.as_bytes()).map_err(|_| format!("{s:?} is not a valid HTTP method"))
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::try_from(name.trim()).map_err(|_| format!("{name:?} is not a valid header name"))
}

fn header_value_arg(s: &str) -> Result<String, String> {
    HeaderValue::try_from(s)
        .map(|_| s.to_string())
        .map_err(|_| "has characters not allowed in a header value".into())
}

fn header_arg(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a header; write it as `Name: value`"))?;
    let value = HeaderValue::try_from(value.trim())
        .map_err(|_| format!("the value of {name:?} has characters not allowed in a header"))?;
    Ok((header_name(name)?, value))
}

fn user_pass_arg(s: &str) -> Result<(String, String), String> {
    let (user, pass) = s
        .split_once(':')
        .ok_or("write the credentials as USER:PASS")?;
    Ok((user.to_string(), pass.to_string()))
}

fn api_key_arg(s: &str) -> Result<(HeaderName, String), String> {
    let (name, key) = s
        .split_once(':')
        .ok_or("write the API key as HEADER:VALUE, like x-api-key:s3cr3t")?;
    let key = key.trim();
    header_value_arg(key)?;
    Ok((header_name(name)?, key.to_string()))
}

/// `DATA`, `@FILE` or `@-` (stdin), read now.
fn data_arg(s: &str) -> Result<Bytes, String> {
    match s.strip_prefix('@') {
        None => Ok(Bytes::copy_from_slice(s.as_bytes())),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            Ok(Bytes::from(buf))
        }
        Some(path) => std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| format!("cannot read {path}: {e}")),
    }
}

fn pem_file(s: &str) -> Result<PemFile, String> {
    let pem = std::fs::read(s).map_err(|e| format!("cannot read {s}: {e}"))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!("{s} holds no PEM certificate"));
    }
    Ok(PemFile {
        path: PathBuf::from(s),
        pem: Bytes::from(pem),
    })
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn headers_and_credentials_parse() {
        let (n, v) = header_arg("X-Trace:  abc ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-trace", "abc"));
        assert!(header_arg("no colon").is_err());
        assert!(header_arg("bad name: x").is_err());
        assert_eq!(
            user_pass_arg("ann:pa:ss").unwrap(),
            ("ann".into(), "pa:ss".into())
        );
        assert!(user_pass_arg("ann").is_err());
        let (n, k) = api_key_arg("x-api-key: s3cr3t").unwrap();
        assert_eq!((n.as_str(), k.as_str()), ("x-api-key", "s3cr3t"));
    }

    #[test]
    fn urls_and_methods_are_checked() {
        assert!(url_arg("https://example.com/x").is_ok());
        assert!(url_arg("example.com/x").is_err());
        assert!(url_arg("ftp://example.com/").is_err());
        assert!(method_arg("PURGE").is_ok());
        assert!(method_arg("BAD METHOD").is_err());
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from([
            "flext",
            "request",
            "http://h/",
            "-X",
            "POST",
            "-H",
            "a: b",
            "-d",
            "x",
            "--retries",
            "0",
        ])
        .unwrap();
        let Command::Request(r) = cli.command else {
            panic!("not a request")
        };
        assert_eq!(r.method, Some(Method::POST));
        assert_eq!(r.retries, Some(0));
        assert_eq!(r.data.as_deref(), Some(&b"x"[..]));
        assert!(Cli::try_parse_from(["flext", "request", "http://h/", "--retries", "11"]).is_err());
        assert!(
            Cli::try_parse_from([
                "flext",
                "request",
                "http://h/",
                "--http1",
                "--http2-prior-knowledge"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["flext", "bench", "http://h/", "-c", "0"]).is_err());
        assert!(Cli::try_parse_from(["flext", "demo", "--duration", "1s"]).is_err());
    }

    #[test]
    fn value_errors_get_the_usage_of_their_command() {
        let e =
            Cli::try_parse_from(["flext", "request", "http://h/", "--timeout", "x"]).unwrap_err();
        let text = with_usage(&e.render().to_string(), Some("request".into()));
        assert!(text.contains("invalid duration"), "{text}");
        assert!(
            text.contains("Usage: flext request [OPTIONS] <URL>"),
            "{text}"
        );
        assert!(
            text.ends_with("For more information, try '--help'.\n"),
            "{text}"
        );
    }
}
