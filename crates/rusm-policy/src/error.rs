//! Errors raised while reading and validating policy files.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A position in a policy source. Both numbers are 1-based; the column counts
/// characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    /// The line, starting at 1.
    pub line: usize,
    /// The column, starting at 1, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `source`. An offset past the end (or in the
    /// middle of a character) is clamped to the nearest preceding character boundary,
    /// so the result always lies inside `source` or just after its last character.
    #[must_use]
    pub fn from_offset(source: &str, offset: usize) -> Location {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &source[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a policy file could not be turned into a [`Policy`](crate::Policy).
///
/// The `Display` form is always a single line. For [`PolicyError::Invalid`] it is
/// `FILE:LINE:COLUMN: MESSAGE`, where the message says what is wrong and what would
/// be valid there.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{}: cannot read policy file: {source}", path.display())]
    Read {
        /// The file that was being read.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The source is not valid TOML, or it is TOML that is not a valid policy.
    #[error("{}:{location}: {message}", origin.display())]
    Invalid {
        /// The file (or the name given for the source) the error is in.
        origin: PathBuf,
        /// Where in the source the problem is.
        location: Location,
        /// What is wrong, in lowercase words, including what would be valid.
        message: String,
    },
}

impl PolicyError {
    /// Where in the source the problem is, when it is about the content of a file.
    #[must_use]
    pub fn location(&self) -> Option<Location> {
        match self {
            PolicyError::Read { .. } => None,
            PolicyError::Invalid { location, .. } => Some(*location),
        }
    }

    /// The file the error is about.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            PolicyError::Read { path, .. } => path,
            PolicyError::Invalid { origin, .. } => origin,
        }
    }

    pub(crate) fn at(origin: &Path, source: &str, span: Range<usize>, message: String) -> Self {
        PolicyError::Invalid {
            origin: origin.to_path_buf(),
            location: Location::from_offset(source, span.start),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_character_columns() {
        let src = "ab\ncdé\nf";
        assert_eq!(
            Location::from_offset(src, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::from_offset(src, 1),
            Location { line: 1, column: 2 }
        );
        assert_eq!(
            Location::from_offset(src, 2),
            Location { line: 1, column: 3 }
        );
        assert_eq!(
            Location::from_offset(src, 3),
            Location { line: 2, column: 1 }
        );
        // 'é' is two bytes; the byte after it is column 4, the middle is clamped.
        assert_eq!(
            Location::from_offset(src, 5),
            Location { line: 2, column: 3 }
        );
        assert_eq!(
            Location::from_offset(src, 6),
            Location { line: 2, column: 3 }
        );
        assert_eq!(
            Location::from_offset(src, 7),
            Location { line: 2, column: 4 }
        );
        assert_eq!(
            Location::from_offset(src, 8),
            Location { line: 3, column: 1 }
        );
        assert_eq!(
            Location::from_offset(src, 100),
            Location { line: 3, column: 2 }
        );
        assert_eq!(
            Location::from_offset("", 0),
            Location { line: 1, column: 1 }
        );
    }

    #[test]
    fn invalid_errors_display_on_one_line_with_file_line_and_column() {
        let err = PolicyError::at(
            Path::new("capabilities/x.toml"),
            "a\nbc",
            3..4,
            "something is wrong".into(),
        );
        assert_eq!(
            err.to_string(),
            "capabilities/x.toml:2:2: something is wrong"
        );
        assert_eq!(err.location(), Some(Location { line: 2, column: 2 }));
        assert_eq!(err.path(), Path::new("capabilities/x.toml"));
    }
}
