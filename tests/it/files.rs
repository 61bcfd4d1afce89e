//! `/api/v2/files`: upload, dedup, download, and rejection of unsafe archives.
