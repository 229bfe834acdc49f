//! The Prometheus endpoint: `GET /metrics` on the address of `[telemetry] listen`.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::Telemetry;
use crate::shutdown::ShutdownSignal;

/// Most scrapes served at once; further connections wait in the accept queue.
const MAX_CONNECTIONS: usize = 16;

/// Binds `addr` and serves metrics until `shutdown` fires. Returns the bound address
/// (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    telemetry: Telemetry,
    shutdown: ShutdownSignal,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_with(addr, Arc::new(move || telemetry.render()), shutdown).await
}

/// What renders the `/metrics` page.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// [`serve`] with a page made by `render` (the control plane merges several
/// registries into one page).
pub async fn serve_with(
    addr: SocketAddr,
    render: Render,
    mut shutdown: ShutdownSignal,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let handle = tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                _ = shutdown.recv() => break,
                p = permits.clone().acquire_owned() => p.expect("never closed"),
            };
            let (stream, _) = tokio::select! {
                _ = shutdown.recv() => break,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => { tracing::debug!(error = %e, "metrics accept failed"); continue; }
                },
            };
            let t = render.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let t = t.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&t, req)) }
                });
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                // A scrape that stalls is cut off rather than held open.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), conn).await;
                drop(permit);
            });
        }
    });
    Ok((local, handle))
}

fn respond(t: &Render, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, t()),
        (&Method::GET, "/health") => (StatusCode::OK, "ok\n".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
