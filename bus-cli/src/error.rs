//! The command line's error: a message that says what went wrong and what to do.

use std::fmt;

/// Why a command failed, in words for its user.
#[derive(Debug)]
pub struct Error {
    message: String,
    broken_pipe: bool,
}

impl Error {
    /// An error saying `message`.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            broken_pipe: false,
        }
    }

    /// Whether the error is the reader of the output going away (`bus tail | head`).
    pub fn is_broken_pipe(&self) -> bool {
        self.broken_pipe
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<bus::Error> for Error {
    fn from(e: bus::Error) -> Self {
        Error::new(e.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error {
            broken_pipe: e.kind() == std::io::ErrorKind::BrokenPipe,
            message: format!("writing the output: {e}"),
        }
    }
}

/// `Err(Error::new(format!(..)))`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::new(format!($($arg)*)))
    };
}
pub(crate) use bail;
