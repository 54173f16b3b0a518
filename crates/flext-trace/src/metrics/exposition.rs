//! Snapshots of the built-in recorder, and their Prometheus text exposition.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::{DURATION_BUCKETS, status_class};

/// The attributes of one series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesAttributes {
    pub(crate) method: &'static str,
    pub(crate) server_address: String,
    pub(crate) server_port: Option<u16>,
    pub(crate) status: Option<u16>,
    pub(crate) error_type: Option<String>,
    pub(crate) overflow: bool,
}

impl SeriesAttributes {
    pub(crate) fn overflow() -> SeriesAttributes {
        SeriesAttributes {
            method: "",
            server_address: String::new(),
            server_port: None,
            status: None,
            error_type: None,
            overflow: true,
        }
    }

    /// `http.request.method`.
    pub fn method(&self) -> &str {
        self.method
    }

    /// `server.address`.
    pub fn server_address(&self) -> &str {
        &self.server_address
    }

    /// `server.port`.
    pub fn server_port(&self) -> Option<u16> {
        self.server_port
    }

    /// `http.response.status_code` (duration series only).
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// `error.type` (duration series only).
    pub fn error_type(&self) -> Option<&str> {
        self.error_type.as_deref()
    }

    /// Whether this is the overflow series past the cardinality limit (then the other
    /// attributes are empty).
    pub fn is_overflow(&self) -> bool {
        self.overflow
    }

    fn write_labels(&self, out: &mut String, le: Option<&str>) {
        let mut labels: Vec<(&str, String)> = Vec::with_capacity(6);
        if self.overflow {
            labels.push(("otel_metric_overflow", "true".to_owned()));
        } else {
            labels.push(("http_request_method", self.method.to_owned()));
            labels.push(("server_address", self.server_address.clone()));
            if let Some(p) = self.server_port {
                labels.push(("server_port", p.to_string()));
            }
            if let Some(s) = self.status {
                labels.push(("http_response_status_code", s.to_string()));
            }
            if let Some(e) = &self.error_type {
                labels.push(("error_type", e.clone()));
            }
        }
        if let Some(le) = le {
            labels.push(("le", le.to_owned()));
        }
        write_label_set(out, &labels);
    }
}

fn write_label_set(out: &mut String, labels: &[(&str, String)]) {
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// One `http.client.request.duration` series.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationSeries {
    attributes: SeriesAttributes,
    buckets: [u64; 15],
    sum_nanos: u64,
}

impl DurationSeries {
    pub(crate) fn new(attributes: SeriesAttributes, buckets: [u64; 15], sum_nanos: u64) -> Self {
        DurationSeries {
            attributes,
            buckets,
            sum_nanos,
        }
    }

    /// The series' attributes.
    pub fn attributes(&self) -> &SeriesAttributes {
        &self.attributes
    }

    /// The number of requests recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The sum of the recorded durations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }

    /// Requests per bucket, not cumulative: one count per bound of [`DURATION_BUCKETS`]
    /// (durations at most that bound and above the previous one), then those above 10 s.
    pub fn bucket_counts(&self) -> &[u64; 15] {
        &self.buckets
    }
}

/// One `http.client.active_requests` series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSeries {
    attributes: SeriesAttributes,
    value: i64,
}

impl ActiveSeries {
    pub(crate) fn new(attributes: SeriesAttributes, value: i64) -> ActiveSeries {
        ActiveSeries { attributes, value }
    }

    /// The series' attributes.
    pub fn attributes(&self) -> &SeriesAttributes {
        &self.attributes
    }

    /// Requests in flight now.
    pub fn value(&self) -> i64 {
        self.value
    }
}

/// The values of every series of an [`HttpClientMetrics`](super::HttpClientMetrics) at one
/// moment, sorted by attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    durations: Vec<DurationSeries>,
    active: Vec<ActiveSeries>,
}

impl MetricsSnapshot {
    pub(crate) fn new(
        mut durations: Vec<DurationSeries>,
        mut active: Vec<ActiveSeries>,
    ) -> MetricsSnapshot {
        durations.sort_by(|a, b| a.attributes.cmp(&b.attributes));
        active.sort_by(|a, b| a.attributes.cmp(&b.attributes));
        MetricsSnapshot { durations, active }
    }

    /// The `http.client.request.duration` series.
    pub fn durations(&self) -> &[DurationSeries] {
        &self.durations
    }

    /// The `http.client.active_requests` series.
    pub fn active_requests(&self) -> &[ActiveSeries] {
        &self.active
    }

    /// All requests recorded (the sum of every duration series' count).
    pub fn request_count(&self) -> u64 {
        self.durations.iter().map(DurationSeries::count).sum()
    }

    /// Requests by status class (`2xx`, `5xx`, ...); requests that got no response are
    /// counted under `none`, and requests of the overflow series (past the cardinality limit,
    /// where attributes, the status among them, are not kept) under `overflow`.
    pub fn count_by_status_class(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for d in &self.durations {
            let class = if d.attributes.is_overflow() {
                "overflow"
            } else {
                d.attributes.status.map_or("none", status_class)
            };
            *out.entry(class).or_insert(0) += d.count();
        }
        out
    }

    /// Failed requests by `error.type` (`503`, `timeout`, `connect`, ...).
    pub fn count_by_error_type(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for d in &self.durations {
            if let Some(e) = &d.attributes.error_type {
                *out.entry(e.clone()).or_insert(0) += d.count();
            }
        }
        out
    }

    /// The Prometheus text exposition format (version 0.0.4), names as OpenTelemetry's
    /// Prometheus exporter writes them:
    ///
    /// - `http_client_request_duration_seconds` (histogram: `_bucket{le=...}` cumulative,
    ///   `_sum`, `_count`);
    /// - `http_client_active_requests` (gauge);
    /// - `flext_http_client_requests_total` (counter by `http_response_status_class` and
    ///   `error_type`, derived from the histogram).
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(256 + self.durations.len() * 1200);
        let name = "http_client_request_duration_seconds";
        out.push_str(
            "# HELP http_client_request_duration_seconds Duration of HTTP client requests.\n",
        );
        out.push_str("# TYPE http_client_request_duration_seconds histogram\n");
        for d in &self.durations {
            let mut cumulative = 0u64;
            for (i, count) in d.buckets.iter().enumerate() {
                cumulative += count;
                let le = DURATION_BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), f64::to_string);
                out.push_str(name);
                out.push_str("_bucket");
                d.attributes.write_labels(&mut out, Some(&le));
                let _ = writeln!(out, " {cumulative}");
            }
            out.push_str(name);
            out.push_str("_sum");
            d.attributes.write_labels(&mut out, None);
            let _ = writeln!(out, " {}", d.sum().as_secs_f64());
            out.push_str(name);
            out.push_str("_count");
            d.attributes.write_labels(&mut out, None);
            let _ = writeln!(out, " {cumulative}");
        }

        out.push_str("# HELP http_client_active_requests Number of active HTTP requests.\n");
        out.push_str("# TYPE http_client_active_requests gauge\n");
        for a in &self.active {
            out.push_str("http_client_active_requests");
            a.attributes.write_labels(&mut out, None);
            let _ = writeln!(out, " {}", a.value);
        }

        out.push_str(
            "# HELP flext_http_client_requests_total HTTP client requests by status class and error type.\n",
        );
        out.push_str("# TYPE flext_http_client_requests_total counter\n");
        let mut totals: BTreeMap<Vec<(&str, String)>, u64> = BTreeMap::new();
        for d in &self.durations {
            let a = &d.attributes;
            let mut labels: Vec<(&str, String)> = Vec::with_capacity(5);
            if a.overflow {
                labels.push(("otel_metric_overflow", "true".to_owned()));
            } else {
                labels.push(("http_request_method", a.method.to_owned()));
                labels.push(("server_address", a.server_address.clone()));
                if let Some(p) = a.server_port {
                    labels.push(("server_port", p.to_string()));
                }
                if let Some(s) = a.status {
                    labels.push(("http_response_status_class", status_class(s).to_owned()));
                }
                if let Some(e) = &a.error_type {
                    labels.push(("error_type", e.clone()));
                }
            }
            *totals.entry(labels).or_insert(0) += d.count();
        }
        for (labels, total) in &totals {
            out.push_str("flext_http_client_requests_total");
            write_label_set(&mut out, labels);
            let _ = writeln!(out, " {total}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(status: Option<u16>, error: Option<&str>) -> SeriesAttributes {
        SeriesAttributes {
            method: "GET",
            server_address: "we\"ird\\host\n".to_owned(),
            server_port: Some(80),
            status,
            error_type: error.map(str::to_owned),
            overflow: false,
        }
    }

    #[test]
    fn exposition_is_cumulative_and_escaped() {
        let mut buckets = [0u64; 15];
        buckets[0] = 1;
        buckets[14] = 2;
        let snap = MetricsSnapshot::new(
            vec![DurationSeries::new(
                attrs(Some(503), Some("503")),
                buckets,
                1_500_000_000,
            )],
            vec![ActiveSeries::new(attrs(None, None), 0)],
        );
        let text = snap.prometheus();
        let labels = r#"http_request_method="GET",server_address="we\"ird\\host\n",server_port="80",http_response_status_code="503",error_type="503""#;
        assert!(
            text.contains(&format!(
                "http_client_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 1\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "http_client_request_duration_seconds_bucket{{{labels},le=\"10\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "http_client_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3\n"
        )));
        assert!(text.contains(&format!(
            "http_client_request_duration_seconds_sum{{{labels}}} 1.5\n"
        )));
        assert!(text.contains(&format!(
            "http_client_request_duration_seconds_count{{{labels}}} 3\n"
        )));
        assert!(text.contains("flext_http_client_requests_total{http_request_method=\"GET\",server_address=\"we\\\"ird\\\\host\\n\",server_port=\"80\",http_response_status_class=\"5xx\",error_type=\"503\"} 3\n"));
        assert!(text.contains("le=\"2.5\""));
        assert!(!text.contains("le=\"1.0\""));
    }
}
