//! One attempt to store one object: a PUT, or a multipart upload above the
//! threshold (aborted if any step fails or the attempt is cancelled), and what an
//! S3 error means for a retry.

use std::error::Error as StdError;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, MultipartUpload, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload,
};

use crate::buffer::BoxFuture;
use crate::sinks::driver::{DeliveryError, Service};

/// S3's most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// One object to store. Cheap to clone (the body is shared), so every attempt
/// sends the same bytes.
#[derive(Clone, Debug)]
pub struct S3Object {
    pub key: Path,
    pub body: Bytes,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
}

impl S3Object {
    fn attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        a.insert(Attribute::ContentType, self.content_type.into());
        if let Some(e) = self.content_encoding {
            a.insert(Attribute::ContentEncoding, e.into());
        }
        a
    }
}

/// When and how objects go as multipart uploads.
#[derive(Clone, Copy, Debug)]
pub struct Multipart {
    /// Bodies larger than this are uploaded in parts.
    pub threshold: u64,
    /// Size of every part but the last.
    pub part_size: u64,
}

pub struct S3Service {
    store: Arc<AmazonS3>,
    bucket: String,
    multipart: Multipart,
}

impl S3Service {
    pub fn new(store: Arc<AmazonS3>, bucket: String, multipart: Multipart) -> Self {
        S3Service {
            store,
            bucket,
            multipart,
        }
    }

    async fn put(&self, obj: &S3Object) -> Result<(), object_store::Error> {
        let opts = PutOptions {
            attributes: obj.attributes(),
            ..PutOptions::default()
        };
        self.store
            .put_opts(&obj.key, PutPayload::from_bytes(obj.body.clone()), opts)
            .await
            .map(drop)
    }

    async fn put_multipart(&self, obj: &S3Object) -> Result<(), object_store::Error> {
        let opts = PutMultipartOptions {
            attributes: obj.attributes(),
            ..PutMultipartOptions::default()
        };
        let upload = self.store.put_multipart_opts(&obj.key, opts).await?;
        let mut guard = AbortOnDrop(Some(upload));
        let upload = guard.0.as_mut().expect("set above");
        // S3 takes at most 10,000 parts: a body too large for that many grows them.
        let size =
            (self.multipart.part_size as usize).max(obj.body.len().div_ceil(MAX_PARTS as usize));
        let mut at = 0;
        let result = async {
            // One part at a time: the body is in memory already, parallel parts
            // would only multiply the connections of `request.concurrency`.
            while at < obj.body.len() {
                let end = (at + size).min(obj.body.len());
                upload
                    .put_part(PutPayload::from_bytes(obj.body.slice(at..end)))
                    .await?;
                at = end;
            }
            upload.complete().await.map(drop)
        }
        .await;
        match result {
            Ok(()) => {
                guard.0 = None;
                Ok(())
            }
            Err(e) => {
                if let Some(mut upload) = guard.0.take() {
                    if let Err(a) = upload.abort().await {
                        tracing::debug!(key = %obj.key, "aborting a failed multipart upload failed: {a}");
                    }
                }
                Err(e)
            }
        }
    }
}

/// Aborts an upload that was neither completed nor aborted: the attempt was
/// cancelled (timeout, shutdown deadline). Without it the parts would stay
/// stored, and billed, until a lifecycle rule removes them.
struct AbortOnDrop(Option<Box<dyn MultipartUpload>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(mut upload) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = upload.abort().await;
                });
            }
        }
    }
}

impl Service for S3Service {
    type Request = S3Object;

    fn call<'a>(&'a self, obj: &'a S3Object) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let result = if obj.body.len() as u64 > self.multipart.threshold {
                self.put_multipart(obj).await
            } else {
                self.put(obj).await
            };
            result.map_err(|e| classify(&e))
        })
    }

    /// Lists one page of the bucket: a wrong credential, a missing bucket or an
    /// unreachable endpoint shows now, not as retries later.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), DeliveryError>> {
        Box::pin(async move {
            match self.store.list(None).next().await {
                None | Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(match classify(&e) {
                    DeliveryError::Permanent { reason, message } => DeliveryError::Permanent {
                        reason,
                        message: format!("bucket {:?}: {message}", self.bucket),
                    },
                    other => other,
                }),
            }
        })
    }
}

/// Whether an S3 error can be retried, and its metric reason.
///
/// 4xx are permanent: a missing bucket (404 NoSuchBucket), a refused credential
/// (403 SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied) will not heal by
/// themselves. 5xx, 429, 408, connection failures and timeouts are retryable.
pub fn classify(e: &object_store::Error) -> DeliveryError {
    use object_store::Error as E;
    let message = chain_text(e);
    match e {
        E::NotFound { .. } => return DeliveryError::permanent("not_found", message),
        E::PermissionDenied { .. } => return DeliveryError::permanent("access_denied", message),
        E::Unauthenticated { .. } => return DeliveryError::permanent("unauthenticated", message),
        E::Precondition { .. } | E::NotModified { .. } => {
            return DeliveryError::permanent("http_4xx", message)
        }
        // 409: S3 answers OperationAborted while a conflicting operation runs.
        E::AlreadyExists { .. } => return DeliveryError::retryable("conflict", message),
        _ => {}
    }
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<HttpError>() {
            let reason = match h.kind() {
                HttpErrorKind::Connect => "connect",
                HttpErrorKind::Timeout => "timeout",
                _ => "http_error",
            };
            return DeliveryError::retryable(reason, message);
        }
        source = s.source();
    }
    match status_in(&message) {
        Some(401) => DeliveryError::permanent("unauthenticated", message),
        Some(403) => DeliveryError::permanent("access_denied", message),
        Some(404) => DeliveryError::permanent("not_found", message),
        Some(408) => DeliveryError::retryable("timeout", message),
        Some(409) => DeliveryError::retryable("conflict", message),
        Some(429) => DeliveryError::retryable("http_429", message),
        Some(s) if (400..500).contains(&s) => DeliveryError::permanent("http_4xx", message),
        Some(s) if s >= 500 => DeliveryError::retryable("http_5xx", message),
        // Credentials that could not be fetched (instance metadata) and the like.
        _ => DeliveryError::retryable("s3_error", message),
    }
}

/// The error and its sources, each level once: some of object_store's levels
/// only say "Retry" and keep the status and S3's message in their source.
/// S3's XML answers span lines: each level is made one line.
fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let one_line = |t: String| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = one_line(e.to_string());
    let mut source = e.source();
    while let Some(s) = source {
        let text = one_line(s.to_string());
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The HTTP status in object_store's "Server returned non-2xx status code: 503
/// Service Unavailable: ..." (its status-carrying error type is not public).
fn status_in(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(text: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        }
    }

    #[test]
    fn statuses_map_to_retryable_or_permanent() {
        let e = classify(&generic(
            "Error performing PUT http://x/b/k in 1ms - Server returned non-2xx status code: 503 Service Unavailable: slow down",
        ));
        assert_eq!((e.reason(), e.is_retryable()), ("http_5xx", true));
        let e = classify(&generic(
            "... status code: 400 Bad Request: <Code>InvalidArgument</Code>",
        ));
        assert_eq!((e.reason(), e.is_retryable()), ("http_4xx", false));
        let e = classify(&generic("... status code: 429 Too Many Requests"));
        assert_eq!((e.reason(), e.is_retryable()), ("http_429", true));
        let e = classify(&generic("no credentials from instance metadata"));
        assert_eq!((e.reason(), e.is_retryable()), ("s3_error", true));
        let e = classify(&object_store::Error::PermissionDenied {
            path: "k".into(),
            source: "SignatureDoesNotMatch".to_string().into(),
        });
        assert_eq!((e.reason(), e.is_retryable()), ("access_denied", false));
        assert!(e.to_string().contains("SignatureDoesNotMatch"), "{e}");
    }
}
