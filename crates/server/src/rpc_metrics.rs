//! Per-RPC request counters and latency histograms, named as in
//! go-grpc-prometheus (`grpc_server_handled_total`,
//! `grpc_server_handling_seconds`) so existing dashboards work unchanged.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

/// Wraps every service of a server in [`RpcMetrics`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// Counts each call by service, method and gRPC status, and records how long
/// it took until the response headers (for our unary RPCs, the answer).
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (service, method) = split_path(req.uri().path());
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                // A successful unary call carries its status in the trailers;
                // only failures come "trailers-only", with it in the headers.
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or("OK", code_name),
                Err(_) => "Unavailable",
            };
            // A path naming no method of ours must not mint label values.
            let (service, method) = if !is_known(&service, &method) {
                ("unknown".to_string(), "unknown".to_string())
            } else {
                (service, method)
            };
            ::metrics::counter!(
                "grpc_server_handled_total",
                "grpc_service" => service.clone(),
                "grpc_method" => method.clone(),
                "grpc_code" => code,
            )
            .increment(1);
            ::metrics::histogram!(
                "grpc_server_handling_seconds",
                "grpc_service" => service,
                "grpc_method" => method,
            )
            .record(start.elapsed().as_secs_f64());
            res
        })
    }
}

/// Whether `service`/`method` is an RPC this build knows (of any Sluice
/// service, health or reflection), from the compiled descriptors.
fn is_known(service: &str, method: &str) -> bool {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    KNOWN
        .get_or_init(|| {
            let mut known = HashSet::new();
            for set in [
                sluice_proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ] {
                let Ok(fds) = <prost_types::FileDescriptorSet as prost::Message>::decode(set)
                else {
                    continue;
                };
                for f in fds.file {
                    for s in &f.service {
                        for m in &s.method {
                            known.insert(format!("{}.{}/{}", f.package(), s.name(), m.name()));
                        }
                    }
                }
            }
            known
        })
        .contains(&format!("{service}/{method}"))
}

/// `/pkg.Service/Method` into (`pkg.Service`, `Method`).
fn split_path(path: &str) -> (String, String) {
    let mut it = path.trim_start_matches('/').splitn(2, '/');
    let service = it.next().unwrap_or_default();
    let method = it.next().unwrap_or_default();
    (service.to_string(), method.to_string())
}

fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_are_labelled() {
        assert!(is_known("sluice.broker.v1.Broker", "Produce"));
        assert!(is_known("grpc.health.v1.Health", "Check"));
        assert!(is_known(
            "grpc.reflection.v1alpha.ServerReflection",
            "ServerReflectionInfo"
        ));
        assert!(!is_known("sluice.broker.v1.Broker", "Nonsense"));
    }

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/sluice.broker.v1.Broker/Produce"),
            ("sluice.broker.v1.Broker".into(), "Produce".into())
        );
        assert_eq!(split_path("/"), (String::new(), String::new()));
    }
}
