//! The controller's two APIs.
//!
//! - [`port`]: the server of the LAN port (default 7443): HTTPS, TLS 1.3 only, its caps per
//!   class and per source, and the deadlines of each stage of a connection.
//! - [`agent`]: the agent API on that port. Pairing needs no client certificate (the PAKE
//!   authenticates both sides); everything under `/v1/agent/` requires a client certificate
//!   from the home CA whose node is still enrolled.
//! - [`admin`]: HTTP over a root-only unix socket on the router itself; the file permissions
//!   are the authentication, as for ubus.
//! - [`web`]: the router web page and its JSON (`/`, `/ui/`, `/api/ui/`), on the agent API's
//!   HTTPS port; browser sessions behind an admin password.

pub mod admin;
pub mod agent;
pub mod channel;
pub mod extract;
pub mod port;
pub mod web;
pub mod wifi;

use crate::api::extract::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use trellis_proto::pairing::ApiError;

use crate::error::{HomeError, Kind};

/// The OpenAPI document of the admin, agent, pairing and web APIs, served at
/// `/api/openapi.json`. A test keeps it and the routers in step.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body either API accepts: CSRs and telemetry are a few KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// The HTTP status of each kind of failure.
pub fn status_of(kind: Kind) -> StatusCode {
    match kind {
        Kind::BadRequest => StatusCode::BAD_REQUEST,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Kind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HomeError {
    fn into_response(self) -> Response {
        (
            status_of(self.kind),
            Json(ApiError {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Malformed JSON gets the same error shape as every other failure, naming what was wrong.
pub fn bad_json(rejection: extract::JsonRejection) -> HomeError {
    if matches!(rejection, extract::JsonRejection::TooLarge) {
        return HomeError::new(
            Kind::TooLarge,
            format!(
                "the request body is larger than {} KiB: send less",
                MAX_BODY / 1024
            ),
        );
    }
    HomeError::new(
        Kind::BadRequest,
        format!("malformed request body: {rejection}"),
    )
}
