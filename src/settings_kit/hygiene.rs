//! Secret hygiene every section applies: template placeholders are refused, and private directories
//! (the data directory holds the database, the development secret and keys) are created owner-only.

use std::path::Path;

/// Case-insensitive substrings that mark an unfilled template value; such values abort startup.
pub const PLACEHOLDER_MARKERS: &[&str] = &[
    "REPLACE_WITH",
    "PLACEHOLDER",
    "CHANGE-ME",
    "CHANGE_ME",
    "YOUR-",
];

/// True when `value` contains a template placeholder marker.
pub fn contains_placeholder(value: &str) -> bool {
    let upper = value.to_ascii_uppercase();
    PLACEHOLDER_MARKERS.iter().any(|m| upper.contains(m))
}

/// Creates `dir` and its missing parents; a directory created here is accessible only by the owner (the
/// data directory holds the database, the development secret and keys). An existing directory keeps its
/// permissions.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn placeholders_are_found_in_any_case() {
        assert!(contains_placeholder("your-api-key"));
        assert!(contains_placeholder("x_change_me_x"));
        assert!(!contains_placeholder("q8Zr1vN3xK5wL7pT"));
    }

    #[cfg(unix)]
    #[test]
    fn a_created_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        create_private_dir(&data).unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        create_private_dir(&data).unwrap();
    }
}
