//! MCM's numbered error codes and the error a configuration is refused with.

use std::fmt;

/// MCM's error codes (`MESH_ERR_*` in `mesh_dp.h`), with their positive values.
///
/// C functions return them negated; [`MeshErr::from_code`] accepts either sign. The values travel
/// in the SDK protocol too, so they must never be renumbered.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeshErr {
    /// `MESH_ERR_BAD_CLIENT_PTR`: a NULL or foreign client pointer.
    BadClientPtr = 1000,
    /// `MESH_ERR_BAD_CONN_PTR`: a NULL or foreign connection pointer.
    BadConnPtr = 1001,
    /// `MESH_ERR_BAD_CONFIG_PTR`: a NULL configuration pointer where one is required.
    BadConfigPtr = 1002,
    /// `MESH_ERR_BAD_BUF_PTR`: a NULL or foreign buffer pointer.
    BadBufPtr = 1003,
    /// `MESH_ERR_BAD_BUF_LEN`: a payload or metadata length beyond the buffer's capacity.
    BadBufLen = 1004,
    /// `MESH_ERR_CLIENT_CONFIG_INVAL`: the client JSON is malformed or a field is invalid.
    ClientConfigInval = 1005,
    /// `MESH_ERR_MAX_CONN`: the client already has `maxMediaConnections` connections.
    MaxConn = 1006,
    /// `MESH_ERR_FOUND_ALLOCATED`: the client still has connections.
    FoundAllocated = 1007,
    /// `MESH_ERR_CONN_FAILED`: the engine could not create the connection.
    ConnFailed = 1008,
    /// `MESH_ERR_CONN_CONFIG_INVAL`: the connection JSON is malformed or a field is invalid.
    ConnConfigInval = 1009,
    /// `MESH_ERR_CONN_CONFIG_INCOMPAT`: valid fields that do not fit together.
    ConnConfigIncompat = 1010,
    /// `MESH_ERR_CONN_CLOSED`: the connection was shut down.
    ConnClosed = 1011,
    /// `MESH_ERR_TIMEOUT`: the wait ran out.
    Timeout = 1012,
    /// `MESH_ERR_NOT_IMPLEMENTED`: a feature this implementation does not provide.
    NotImplemented = 1013,
}

impl MeshErr {
    /// Every code, in numeric order.
    pub const ALL: [MeshErr; 14] = [
        Self::BadClientPtr,
        Self::BadConnPtr,
        Self::BadConfigPtr,
        Self::BadBufPtr,
        Self::BadBufLen,
        Self::ClientConfigInval,
        Self::MaxConn,
        Self::FoundAllocated,
        Self::ConnFailed,
        Self::ConnConfigInval,
        Self::ConnConfigIncompat,
        Self::ConnClosed,
        Self::Timeout,
        Self::NotImplemented,
    ];

    /// The positive code, e.g. 1000 for [`MeshErr::BadClientPtr`].
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The error whose code is `code` or `-code`; `None` for any other value.
    pub fn from_code(code: i32) -> Option<Self> {
        let index = code.checked_abs()?.checked_sub(Self::BadClientPtr.code())?;
        Self::ALL.get(usize::try_from(index).ok()?).copied()
    }

    /// A short description, the text `mesh_err2str` returns (MCM's wording).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadClientPtr => "Bad client pointer",
            Self::BadConnPtr => "Bad connection pointer",
            Self::BadConfigPtr => "Bad configuration pointer",
            Self::BadBufPtr => "Bad buffer pointer",
            Self::BadBufLen => "Bad buffer length",
            Self::ClientConfigInval => "Invalid parameters in client configuration",
            Self::MaxConn => "Reached max number of connections",
            Self::FoundAllocated => "Found allocated resources",
            Self::ConnFailed => "Connection creation failed",
            Self::ConnConfigInval => "Invalid parameters in connection configuration",
            Self::ConnConfigIncompat => "Incompatible parameters in connection configuration",
            Self::ConnClosed => "Connection is closed",
            Self::Timeout => "Timeout occurred",
            Self::NotImplemented => "Feature not implemented yet",
        }
    }
}

impl fmt::Display for MeshErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a client or connection configuration was refused.
///
/// `class` is the code the C API returns (negated): [`MeshErr::ClientConfigInval`],
/// [`MeshErr::ConnConfigInval`] or [`MeshErr::ConnConfigIncompat`]. `message` names the field
/// by its dotted path, the value found and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The MCM error code this maps to.
    pub class: MeshErr,
    /// What was wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    /// An error of class `class` saying `message`.
    pub fn new(class: MeshErr, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_consecutive_from_1000() {
        for (i, err) in MeshErr::ALL.iter().enumerate() {
            assert_eq!(err.code(), 1000 + i as i32);
        }
        assert_eq!(MeshErr::Timeout.code(), 1012);
        assert_eq!(MeshErr::NotImplemented.code(), 1013);
    }

    #[test]
    fn from_code_round_trips_both_signs() {
        for err in MeshErr::ALL {
            assert_eq!(MeshErr::from_code(err.code()), Some(err));
            assert_eq!(MeshErr::from_code(-err.code()), Some(err));
        }
    }

    #[test]
    fn from_code_rejects_other_values() {
        for code in [0, 1, 999, 1014, -999, -1014, i32::MAX, i32::MIN, -i32::MAX] {
            assert_eq!(MeshErr::from_code(code), None, "{code}");
        }
    }

    #[test]
    fn texts_are_distinct_and_displayed() {
        let mut texts: Vec<_> = MeshErr::ALL.iter().map(|e| e.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), MeshErr::ALL.len());
        assert_eq!(MeshErr::Timeout.to_string(), "Timeout occurred");
    }

    #[test]
    fn config_error_displays_its_message() {
        let err = ConfigError::new(MeshErr::ConnConfigInval, "bufferQueueCapacity: bad");
        assert_eq!(err.to_string(), "bufferQueueCapacity: bad");
        assert_eq!(err.class, MeshErr::ConnConfigInval);
    }
}
