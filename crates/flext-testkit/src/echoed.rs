//! [`Echoed`]: what the `echo` step answers, read back by a test.

use serde::Deserialize;

/// The JSON an `echo` step answers with, as a client reads it: the request the server got.
///
/// ```
/// let echoed: flext_testkit::Echoed = serde_json::from_str(
///     r#"{"method":"GET","uri":"/a","path":"/a","query":null,"version":"HTTP/1.1",
///         "headers":[["x-a","1"],["x-a","2"]],"body":"","body_len":0,"connection":1}"#,
/// )?;
/// assert_eq!(echoed.header("X-A"), Some("1"));
/// assert_eq!(echoed.headers("x-a"), ["1", "2"]);
/// assert_eq!(echoed.header("x-b"), None);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Echoed {
    /// The method.
    pub method: String,
    /// The request target as received.
    pub uri: String,
    /// Its path.
    pub path: String,
    /// Its query, if any.
    pub query: Option<String>,
    /// `"HTTP/1.1"` or `"HTTP/2.0"`.
    pub version: String,
    /// Each header name and value, in order, repeats included.
    pub headers: Vec<(String, String)>,
    /// The body (UTF-8, lossy).
    pub body: String,
    /// The body's length in bytes.
    pub body_len: usize,
    /// The trailers, when the request had any.
    #[serde(default)]
    pub trailers: Option<Vec<(String, String)>>,
    /// The server's number for the connection.
    pub connection: u64,
}

impl Echoed {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
