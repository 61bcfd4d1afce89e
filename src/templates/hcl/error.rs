//! Errors of an import (all problems of a template at once) and of a build-time evaluation.

use std::fmt;

/// One problem of a template, pointing at the file and block it is in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportError {
    pub file: String,
    /// 1-based line of the block (or of the syntax error), when known.
    pub line: Option<usize>,
    /// The block header, e.g. `data "coder_workspace_preset" "dev"`; "" for file-level
    /// problems such as syntax errors.
    pub block: String,
    pub message: String,
}

impl ImportError {
    pub(crate) fn new(
        file: impl Into<String>,
        line: Option<usize>,
        block: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ImportError {
            file: file.into(),
            line,
            block: block.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.block.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.block, self.message)
        }
    }
}

/// All problems of a template; never empty. Sorted by file, then line, then discovery order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportErrors(pub Vec<ImportError>);

impl ImportErrors {
    pub fn errors(&self) -> &[ImportError] {
        &self.0
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ImportError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ImportErrors {
    /// One problem per line, so a job's `error` text lists them all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ImportErrors {
    type Item = &'a ImportError;
    type IntoIter = std::slice::Iter<'a, ImportError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A failure to evaluate a template for a build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// An expression could not be evaluated (unknown function argument, wrong type, …).
    #[error("{file}: {block}: {attribute}: {message}")]
    Expression {
        file: String,
        block: String,
        attribute: String,
        message: String,
    },
    /// The context lacks something the template needs.
    #[error("{0}")]
    MissingContext(String),
    /// Locals and resources refer to each other in a loop.
    #[error("dependency cycle between {0}")]
    Cycle(String),
}
