//! Why a webhook request is not answered 200, as one type: the handler returns it with `?`,
//! `receive` counts it under its `reason` in `auditlake_requests_refused_total`, and axum renders
//! it (`IntoResponse`): the status, `{"error": message}`, and the headers a sender acts on
//! (`WWW-Authenticate` on 401, `Retry-After` on 503).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub(super) enum WebhookError {
    /// 401: no credential, or one nobody issued.
    #[error("{0}")]
    Unauthenticated(String),
    /// 403: a credential that may not write this cluster.
    #[error("{0}")]
    Forbidden(String),
    /// 400: the request names no usable cluster.
    #[error("{0}")]
    BadCluster(String),
    /// 408: the body did not arrive within the body timeout.
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// 413: the body, or its gunzipped form, is over the limit.
    #[error("request body over {0} bytes")]
    TooLarge(usize),
    /// 400: the body could not be read (transport, gzip, encoding).
    #[error("{0}")]
    BadBody(String),
    /// 403: the payload names another cluster than the request may write; nothing is stored.
    #[error("the payload names cluster {named:?}, but this request may write only {bound:?}")]
    ClusterMismatch { named: String, bound: String },
    /// 503 + Retry-After: over a WAL, disk or memory bound, or the WAL is unavailable. The API
    /// server retries.
    #[error("{message}")]
    RetryLater {
        reason: &'static str,
        message: String,
        after_secs: u32,
    },
    /// 400, after the body is durable: it is kept, quarantined whole, as it is not audit JSON.
    #[error(
        "body is not an audit Event, EventList or array of events: {reason} (quarantined as {request_id})"
    )]
    NotAudit { reason: String, request_id: String },
    /// 500: decoding the body panicked (a bug of ours, not the sender's).
    #[error("decoder panicked: {0}")]
    DecoderPanicked(String),
}

impl WebhookError {
    /// The `reason` label it is counted under in `auditlake_requests_refused_total`; `None` for
    /// a fault of the server itself.
    pub(super) fn reason(&self) -> Option<&'static str> {
        use WebhookError::*;
        Some(match self {
            Unauthenticated(_) => "unauthenticated",
            Forbidden(_) => "forbidden",
            BadCluster(_) | BadBody(_) | NotAudit { .. } => "bad_body",
            BodyTimeout(_) => "body_timeout",
            TooLarge(_) => "too_large",
            ClusterMismatch { .. } => "cluster_mismatch",
            RetryLater { reason, .. } => reason,
            DecoderPanicked(_) => return None,
        })
    }

    fn status(&self) -> StatusCode {
        use WebhookError::*;
        match self {
            Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) | ClusterMismatch { .. } => StatusCode::FORBIDDEN,
            BadCluster(_) | BadBody(_) | NotAudit { .. } => StatusCode::BAD_REQUEST,
            BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RetryLater { .. } => StatusCode::SERVICE_UNAVAILABLE,
            DecoderPanicked(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let mut response = super::error(self.status(), self.to_string());
        let headers = response.headers_mut();
        match self {
            WebhookError::Unauthenticated(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            WebhookError::RetryLater { after_secs, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(after_secs));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each refusal renders its status, message and the header the sender acts on.
    #[test]
    fn refusals_render_status_message_and_headers() {
        let r = WebhookError::Unauthenticated("no credential".into()).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let busy = WebhookError::RetryLater {
            reason: "overloaded",
            message: "over the WAL bound".into(),
            after_secs: 7,
        };
        assert_eq!(busy.reason(), Some("overloaded"));
        let r = busy.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let bad = WebhookError::NotAudit {
            reason: "expected value at line 1".into(),
            request_id: "01J".into(),
        };
        assert_eq!(bad.reason(), Some("bad_body"));
        assert_eq!(
            bad.to_string(),
            "body is not an audit Event, EventList or array of events: expected value at line 1 (quarantined as 01J)"
        );
        assert_eq!(bad.into_response().status(), StatusCode::BAD_REQUEST);
        assert_eq!(WebhookError::DecoderPanicked("x".into()).reason(), None);
        assert_eq!(
            WebhookError::TooLarge(10).into_response().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
