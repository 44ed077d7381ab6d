//! How a request into the home fails: one error type for every part of the controller, with a
//! [`Kind`] the APIs map to an HTTP status and a message that says what was wrong and what
//! to do. The parts' own errors (store, pairing, CA) convert into it here, so they need not
//! know about each other or about HTTP.

use crate::ca;
use crate::pairing::PairingError;
use crate::store::StoreError;

/// Why a request failed, in the caller's terms. The APIs map kinds to HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BadRequest,
    Forbidden,
    NotFound,
    Conflict,
    TooMany,
    /// A request body over the limit.
    TooLarge,
    /// A known path asked with a method it does not take.
    MethodNotAllowed,
    StorageFull,
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HomeError {
    pub kind: Kind,
    pub message: String,
}

impl HomeError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<StoreError> for HomeError {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::DiskFull => Kind::StorageFull,
            StoreError::Conflict(_) => Kind::Conflict,
            StoreError::NotFound(_) => Kind::NotFound,
            _ => Kind::Internal,
        };
        HomeError::new(kind, e.to_string())
    }
}

impl From<PairingError> for HomeError {
    fn from(e: PairingError) -> Self {
        let kind = match &e {
            PairingError::WrongCode { .. } => Kind::Forbidden,
            PairingError::UnknownSession => Kind::NotFound,
            PairingError::UsedMeanwhile => Kind::Conflict,
            PairingError::TooManyCodes | PairingError::Busy | PairingError::TooFast(_) => {
                Kind::TooMany
            }
            PairingError::BadMessage(_) => Kind::BadRequest,
        };
        HomeError::new(kind, e.to_string())
    }
}

impl From<ca::CaError> for HomeError {
    fn from(e: ca::CaError) -> Self {
        let kind = match &e {
            ca::CaError::BadCsr(_) | ca::CaError::WrongKeyType => Kind::BadRequest,
            _ => Kind::Internal,
        };
        HomeError::new(kind, e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, HomeError>;
