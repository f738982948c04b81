//! Prometheus metrics: one registry per process, rendered in the text exposition format on
//! `/metrics`, plus an HTTP middleware counting requests and timing them per route.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Which listener served it (`admin` or `api`).
    pub listener: &'static str,
    /// HTTP method: a standard one, or `other` (see [`method_label`]).
    pub method: &'static str,
    /// Route template (`/v1/vms/{id}`), never the raw path, to keep cardinality bounded.
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// The process's metrics registry and the metrics every service has.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry whose metric names are prefixed `ultracloud_` and labelled with `service`.
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "ultracloud",
            [(std::borrow::Cow::Borrowed("service"), std::borrow::Cow::Owned(service.to_owned()))].into_iter(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration = Family::<HttpLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register("http_requests", "HTTP requests served", http_requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", http_duration.clone());
        let up = Gauge::<i64>::default();
        up.set(1);
        registry.register("up", "1 while the service process runs", up);
        let started = Gauge::<i64>::default();
        started.set(i64::try_from(crate::clock::now_secs()).unwrap_or(i64::MAX));
        registry.register("start_time_seconds", "Unix time the process started", started);
        Self { registry: Arc::new(Mutex::new(registry)), http_requests, http_duration }
    }

    /// Registers a service-specific metric (`name` gets the `ultracloud_` prefix).
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner).register(name, help, metric);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail; an encoding error would be a bug in a metric type.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        out
    }

    /// Records one finished HTTP request.
    pub fn observe_http(&self, labels: HttpLabels, seconds: f64) {
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.get_or_create(&labels).observe(seconds);
    }
}

/// State of the [`track_http`] middleware.
#[derive(Clone, Debug)]
pub struct HttpTracking {
    /// Where to record.
    pub metrics: Metrics,
    /// Listener label.
    pub listener: &'static str,
}

/// The method as a label: the standard ones by name, anything else as `other`, so that a client
/// sending made-up methods to an unauthenticated listener cannot grow the metric without bound.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::PATCH => "PATCH",
        M::DELETE => "DELETE",
        M::OPTIONS => "OPTIONS",
        M::CONNECT => "CONNECT",
        M::TRACE => "TRACE",
        _ => "other",
    }
}

/// axum middleware recording request counts and latencies by route template:
/// `router.layer(axum::middleware::from_fn_with_state(tracking, track_http))`.
pub async fn track_http(State(tracking): State<HttpTracking>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    let labels = HttpLabels { listener: tracking.listener, method, route, status: response.status().as_u16() };
    tracking.metrics.observe_http(labels, start.elapsed().as_secs_f64());
    response
}
