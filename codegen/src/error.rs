//! The one error type of the spec compiler: every problem names the file and JSON pointer it comes from.

use std::fmt;

/// A problem found while loading or compiling the specs.
///
/// Its `Display` text always starts with the file (and, for content problems, the JSON pointer) so a build
/// script can print it as-is: `spec/asyncapi.yaml#/components/schemas/X/properties/y: unsupported keyword "oneOf"`.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A spec file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file that was being read.
        file: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A spec file is not valid YAML (or holds YAML that has no JSON equivalent).
    #[error("{file}: invalid YAML: {message}")]
    Yaml {
        /// The file that was being parsed.
        file: String,
        /// What the parser said.
        message: String,
    },
    /// The document is valid YAML but breaks the conventions of `docs/contract.md`.
    #[error("{file}#{pointer}: {message}")]
    Invalid {
        /// The file holding the problem.
        file: String,
        /// The JSON pointer (RFC 6901) of the offending place, e.g. `/components/schemas/UserMessage`.
        pointer: String,
        /// What is wrong.
        message: String,
    },
}

impl SpecError {
    /// Builds an [`SpecError::Invalid`].
    pub(crate) fn invalid(file: &str, pointer: &str, message: impl fmt::Display) -> Self {
        Self::Invalid {
            file: file.to_owned(),
            pointer: pointer.to_owned(),
            message: message.to_string(),
        }
    }

    /// The JSON pointer of the problem, when it is about a place in a document.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            Self::Invalid { pointer, .. } => Some(pointer),
            Self::Io { .. } | Self::Yaml { .. } => None,
        }
    }
}

/// Appends one reference token to a JSON pointer, escaping `~` and `/` as RFC 6901 requires.
pub(crate) fn child(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", token.replace('~', "~0").replace('/', "~1"))
}
