//! The SDK's error: an MCM error code (or an OS errno) and a message saying what went wrong.

use std::fmt;

use mcm_proto::config::{ConfigError, MeshErr};

/// What an SDK call failed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: Kind,
    message: String,
}

/// The class of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One of MCM's `MESH_ERR_*` codes.
    Mesh(MeshErr),
    /// An OS error number (e.g. `ENOMEM`).
    Os(i32),
}

/// Result of SDK calls.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of MCM class `err`.
    pub fn mesh(err: MeshErr, message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Mesh(err),
            message: message.into(),
        }
    }

    /// An OS error `errno` (positive).
    pub fn os(errno: i32, message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Os(errno),
            message: message.into(),
        }
    }

    /// The class.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The MCM class, if it is one.
    pub fn mesh_err(&self) -> Option<MeshErr> {
        match self.kind {
            Kind::Mesh(e) => Some(e),
            Kind::Os(_) => None,
        }
    }

    /// The value a C function returns: the code negated (`-MESH_ERR_*` or `-errno`).
    pub fn code(&self) -> i32 {
        match self.kind {
            Kind::Mesh(e) => -e.code(),
            Kind::Os(errno) => -errno,
        }
    }

    /// What went wrong, and what is allowed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `MESH_ERR_CONN_CLOSED` with `message`.
    pub(crate) fn closed(message: impl Into<String>) -> Self {
        Self::mesh(MeshErr::ConnClosed, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Mesh(e) => write!(f, "{} ({}): {}", e.as_str(), e.code(), self.message),
            Kind::Os(errno) => write!(f, "errno {errno}: {}", self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Self::mesh(e.class, e.to_string())
    }
}
