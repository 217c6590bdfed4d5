//! The HTTP(S) server: request ids, `/_cyvault/metrics` and `/_cyvault/health`, TLS, graceful
//! shutdown. Everything else goes to s3s.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::service::S3Service;
use s3s::{Body, HttpRequest, HttpResponse};
use tokio::net::TcpListener;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::metrics::Metrics;

/// Loads a PEM certificate chain and private key into a TLS acceptor.
pub fn tls_acceptor(cert: &Path, key: &Path) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use std::io::{BufReader, Error};
    let certs =
        rustls_pemfile::certs(&mut BufReader::new(std::fs::File::open(cert)?)).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(std::fs::File::open(key)?))?
        .ok_or_else(|| Error::other(format!("no private key in {}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn request_id() -> String {
    crate::layout::random_id(8).to_uppercase()
}

fn plain(status: u16, body: String, ctype: &str) -> HttpResponse {
    let mut r = HttpResponse::new(Body::from(body));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Serves one request: our own routes, or s3s with the request id added to errors.
async fn handle(s3: S3Service, metrics: Arc<Metrics>, req: HttpRequest) -> Result<HttpResponse, Infallible> {
    let id = request_id();
    let span = info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    async move {
        metrics.request_started();
        let path = req.uri().path();
        let mut resp = if path == "/_cyvault/metrics" {
            plain(200, metrics.render(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
        } else if path == "/_cyvault/health" {
            plain(200, "ok\n".into(), "text/plain")
        } else {
            match s3.call(req).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = ?e, "s3s failed to answer");
                    plain(500, String::new(), "application/xml")
                }
            }
        };
        let status = resp.status().as_u16();
        if let Ok(v) = id.parse() {
            resp.headers_mut().insert("x-amz-request-id", v);
        }
        if status == 304 {
            *resp.body_mut() = Body::empty();
            resp.headers_mut().remove(hyper::header::CONTENT_LENGTH);
            resp.headers_mut().remove(hyper::header::CONTENT_TYPE);
        } else if status >= 400 {
            resp = with_request_id(resp, &id).await;
        }
        metrics.observe_http(status);
        metrics.request_finished();
        if status >= 500 {
            warn!(status, "request failed");
        } else {
            debug!(status, "request done");
        }
        Ok(resp)
    }
    .instrument(span)
    .await
}

/// Puts `<RequestId>` into an S3 XML error body that lacks one.
async fn with_request_id(resp: HttpResponse, id: &str) -> HttpResponse {
    let (mut parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let text = String::from_utf8_lossy(&bytes);
    let new = if text.contains("</Error>") && !text.contains("<RequestId>") {
        Bytes::from(text.replacen("</Error>", &format!("<RequestId>{id}</RequestId></Error>"), 1))
    } else {
        bytes
    };
    parts.headers.insert(hyper::header::CONTENT_LENGTH, new.len().into());
    HttpResponse::from_parts(parts, Body::from(new))
}

/// Accepts connections until `shutdown` resolves, then lets in-flight requests finish (up to
/// `grace`).
pub async fn serve(
    listener: TcpListener,
    s3: S3Service,
    metrics: Arc<Metrics>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let builder = ConnBuilder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (s3, metrics) = (s3.clone(), metrics.clone());
        let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            handle(s3.clone(), metrics.clone(), req.map(Body::from))
        });
        match &tls {
            None => {
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    info!(in_flight = metrics.in_flight(), "shutting down: no new connections; finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
        () = tokio::time::sleep(grace) => warn!("gave up waiting for connections after {grace:?}"),
    }
}

/// Virtual-hosted-style addressing: `BUCKET.DOMAIN[:port]` names the bucket; any other host
/// (an IP, `localhost`, the bare domain) is path style.
#[derive(Debug)]
pub struct DomainHost {
    domains: Vec<String>,
}

impl DomainHost {
    pub fn new(domains: &[String]) -> Result<DomainHost, String> {
        let mut out = Vec::new();
        for d in domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !d.is_empty()
                && d.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            if !valid {
                return Err(format!("{d:?} is not a domain name"));
            }
            out.push(d);
        }
        // Longest first, so s3.example.com wins over example.com.
        out.sort_by_key(|d| std::cmp::Reverse(d.len()));
        Ok(DomainHost { domains: out })
    }

    /// The bucket a Host header names, if any.
    pub fn bucket_of<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        self.domains.iter().find_map(|d| {
            let rest = name.len().checked_sub(d.len() + 1)?;
            let (bucket, suffix) = name.split_at(rest);
            (suffix.len() == d.len() + 1
                && suffix[1..].eq_ignore_ascii_case(d)
                && suffix.starts_with('.')
                && !bucket.is_empty())
            .then_some(bucket)
        })
    }
}

impl s3s::host::S3Host for DomainHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let vh = s3s::host::VirtualHost::new(host);
        Ok(match self.bucket_of(host) {
            Some(b) => vh.with_bucket(b),
            None => vh,
        })
    }
}

/// Serves `GET /metrics` (and `/health`) on a listener of its own, the address Prometheus
/// scrapes by convention; runs until the process ends.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let metrics = metrics.clone();
            async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/metrics" => {
                        plain(200, metrics.render(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
                    }
                    "/health" => plain(200, "ok\n".into(), "text/plain"),
                    _ => plain(404, "try /metrics\n".into(), "text/plain"),
                })
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(domains: &[&str], host: &str, bucket: Option<&str>) {
        let h = DomainHost::new(&domains.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.bucket_of(host), bucket, "{host}");
    }

    #[test]
    fn hosts() {
        check(&["s3.vault.test"], "b1.s3.vault.test", Some("b1"));
        check(&["s3.vault.test"], "b1.s3.vault.test:9000", Some("b1"));
        check(&["s3.vault.test"], "my.dotted.bucket.s3.vault.test", Some("my.dotted.bucket"));
        check(&["s3.vault.test"], "s3.vault.test:9000", None);
        check(&["s3.vault.test"], "127.0.0.1:9000", None);
        check(&["s3.vault.test"], "localhost", None);
        check(&["s3.vault.test"], "xs3.vault.test", None);
        check(&["vault.test", "s3.vault.test"], "b.s3.vault.test", Some("b"));
        assert!(DomainHost::new(&["bad domain".into()]).is_err());
    }
}
