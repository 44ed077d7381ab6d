//! How both APIs read a request: JSON bodies (and JSON answers) and query strings.
//!
//! axum's own `Json` and `Query` report where in the document a value was wrong through
//! `serde_path_to_error`, instantiated once per request type: router flash pays for it
//! (cross/README.md). serde_json's and serde_urlencoded's own messages ("missing field `ssid`
//! at line 1 column 14") already say what was wrong, so these extractors keep those and drop
//! the rest. Only the parse is generic; the content-type check and the answers to a bad
//! request are not.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A JSON body in, or a JSON answer out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// Why a body was not the JSON a handler asked for.
#[derive(Debug)]
pub enum JsonRejection {
    /// The `Content-Type` was missing or not `application/json` (or `…+json`).
    NotJson,
    /// Over the route's body limit (`DefaultBodyLimit`).
    TooLarge,
    /// The body could not be read: the client went away or sent a broken chunked body.
    Unreadable(String),
    /// Not JSON, or JSON of the wrong shape: serde_json's message, with line and column.
    Malformed(String),
}

impl JsonRejection {
    pub fn status(&self) -> StatusCode {
        match self {
            JsonRejection::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            JsonRejection::Unreadable(_) => StatusCode::BAD_REQUEST,
            JsonRejection::Malformed(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl std::fmt::Display for JsonRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonRejection::NotJson => {
                f.write_str("the body must be JSON, sent with Content-Type: application/json")
            }
            JsonRejection::TooLarge => f.write_str("the body is larger than this API accepts"),
            JsonRejection::Unreadable(e) => write!(f, "the body could not be read: {e}"),
            JsonRejection::Malformed(e) => f.write_str(e),
        }
    }
}

impl IntoResponse for JsonRejection {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}

/// `application/json`, or any `application/…+json`, with or without parameters.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// The body's bytes, within the route's `DefaultBodyLimit`.
async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, JsonRejection> {
    if !is_json(req.headers()) {
        return Err(JsonRejection::NotJson);
    }
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            JsonRejection::TooLarge
        } else {
            JsonRejection::Unreadable(e.body_text())
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = JsonRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(Json)
            .map_err(|e| JsonRejection::Malformed(e.to_string()))
    }
}

/// An answer whose value could not be written as JSON: a bug here, not the client's fault.
fn unserialisable(e: serde_json::Error) -> Response {
    tracing::error!(error = %e, "an answer could not be written as JSON");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the controller could not write its answer as JSON",
    )
        .into_response()
}

fn json_answer(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => json_answer(body),
            Err(e) => unserialisable(e),
        }
    }
}

/// A query string read into `T`; no query string reads as an empty one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

/// A query string that is not what the handler asked for: serde_urlencoded's message.
#[derive(Debug)]
pub struct QueryRejection(String);

impl std::fmt::Display for QueryRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed query string: {}", self.0)
    }
}

impl IntoResponse for QueryRejection {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, self.to_string()).into_response()
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = QueryRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
            .map(Query)
            .map_err(|e| QueryRejection(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    #[test]
    fn json_content_types_are_recognised_as_axum_did() {
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("application/json; charset=utf-8")));
        assert!(is_json(&headers("Application/JSON")));
        assert!(is_json(&headers("application/merge-patch+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&headers("application/jsonx")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_body_of_the_wrong_shape_names_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Network {
            ssid: String,
        }
        let req = Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(r#"{"passphrase":"x"}"#))
            .unwrap();
        let err = Json::<Network>::from_request(req, &()).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.to_string().contains("missing field `ssid`"), "{err}");
    }

    #[tokio::test]
    async fn a_query_of_the_wrong_type_says_which_value() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Since {
            since: u64,
        }
        let (mut parts, ()) = Request::builder()
            .uri("/v1/agent/config?since=soon")
            .body(())
            .unwrap()
            .into_parts();
        let err = Query::<Since>::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("malformed query string: "),
            "{err}"
        );
        let (mut parts, ()) = Request::builder()
            .uri("/v1/agent/config?since=7")
            .body(())
            .unwrap()
            .into_parts();
        let Query(q) = Query::<Since>::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(q.since, 7);
    }

    #[tokio::test]
    async fn a_body_without_json_content_type_is_refused() {
        let req = Request::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let err = Json::<serde_json::Value>::from_request(req, &())
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
