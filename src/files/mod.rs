//! Uploaded template sources (tar archives), keyed by SHA-256 per creator.

pub mod api;
pub mod archive;
pub mod store;

pub use store::{get_file, FileRow};

/// The only stored type: tar archives (Coder's `codersdk.ContentTypeTar`).
pub const CONTENT_TYPE_TAR: &str = "application/x-tar";
/// Zip uploads Coder converts to tar (`codersdk.ContentTypeZip` and Windows' name for it).
pub const CONTENT_TYPE_ZIP: &str = "application/zip";
pub const CONTENT_TYPE_ZIP_WINDOWS: &str = "application/x-zip-compressed";

/// Largest upload, Coder's `HTTPFileMaxBytes` (`10 * (10 << 20)`, 100 MiB).
pub const MAX_UPLOAD_BYTES: usize = 10 * (10 << 20);

/// Quotes like Go's `%q` for the strings we echo (header values, archive paths): `"`, `\` and control
/// characters escaped, everything printable kept.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("application/json"), "\"application/json\"");
        assert_eq!(go_quote(""), "\"\"");
        assert_eq!(go_quote("a\"b\\c\n\x01é"), "\"a\\\"b\\\\c\\n\\x01é\"");
    }
}
