//! Validation of uploaded tar archives, before they are stored.
//!
//! Coder itself stores any bytes and leaves safety to the provisioner's extractor. We refuse, up front,
//! archives that could not be extracted safely anywhere:
//! - entries with absolute paths or `..` components;
//! - links whose target is absolute or resolves outside the archive root, following the archive's own
//!   symlinks (so `d/up -> ..` plus `d/out -> up/../x`, each lexically harmless, is caught);
//! - entries placed beneath one of the archive's symlinks (a directory walk never produces them, and they
//!   would make an entry's real location differ from its name);
//! - more than [`Limits::max_entries`] entries, or more than [`Limits::max_unpacked_bytes`] of unpacked
//!   data (GNU sparse entries can declare a large real size in a tiny archive).
//!
//! Parsing is the `tar` crate's: GNU long names, PAX paths and sizes are honoured. Device nodes and FIFOs
//! pass (Coder's CLI includes them when tarring a directory that has them); whoever extracts an archive
//! should materialise only directories, regular files and links.

use std::collections::{HashMap, VecDeque};

use tar::EntryType;

use super::go_quote;

/// At most this many entries (headers, after GNU/PAX extension headers are folded in).
pub const MAX_ENTRIES: usize = 10_000;
/// At most this many bytes of entry data once unpacked (sparse entries count their real size).
pub const MAX_UNPACKED_BYTES: u64 = 100 << 20;
/// Symbolic links followed while resolving one path before it is treated as a loop (Linux's limit).
const MAX_LINK_HOPS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: usize,
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: MAX_ENTRIES,
            max_unpacked_bytes: MAX_UNPACKED_BYTES,
        }
    }
}

/// What a valid archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub entries: usize,
    pub unpacked_bytes: u64,
}

/// Why an entry is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsafe {
    EmptyPath,
    AbsolutePath,
    ParentComponent,
    /// A non-directory entry whose path is the archive root itself (e.g. `./`).
    RootNotDirectory,
    EmptyLinkTarget,
    AbsoluteLinkTarget(String),
    /// A hard link's target names a `..` component (hard-link targets are archive paths).
    ParentInLinkTarget(String),
    LinkEscapes(String),
    /// The entry's path goes through a symbolic link declared in the archive (named here).
    ThroughLink(String),
    LinkLoop,
    /// The same path is declared as a symbolic link twice with different targets.
    ConflictingLink,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyPath => write!(f, "its path is empty"),
            Self::AbsolutePath => write!(f, "its path is absolute"),
            Self::ParentComponent => write!(f, "its path contains \"..\""),
            Self::RootNotDirectory => write!(f, "it names the archive root but is not a directory"),
            Self::EmptyLinkTarget => write!(f, "its link target is empty"),
            Self::AbsoluteLinkTarget(t) => {
                write!(f, "it links to the absolute path {}", go_quote(t))
            }
            Self::ParentInLinkTarget(t) => {
                write!(
                    f,
                    "it is a hard link whose target {} contains \"..\"",
                    go_quote(t)
                )
            }
            Self::LinkEscapes(t) => {
                write!(
                    f,
                    "its link target {} points outside the archive",
                    go_quote(t)
                )
            }
            Self::ThroughLink(l) => {
                write!(f, "its path goes through the symbolic link {}", go_quote(l))
            }
            Self::LinkLoop => write!(
                f,
                "its path or link target goes through a loop of symbolic links"
            ),
            Self::ConflictingLink => {
                write!(
                    f,
                    "it is declared more than once as a symbolic link with different targets"
                )
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a valid tar archive: {0}")]
    Malformed(String),
    #[error("more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("more than {limit} bytes when unpacked")]
    TooLarge { limit: u64 },
    #[error("entry {}: {reason}", go_quote(.entry))]
    UnsafeEntry { entry: String, reason: Unsafe },
}

type Components = Vec<Vec<u8>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Symlink,
    HardLink,
    Other,
}

struct Checked {
    name: String,
    path: Components,
    kind: Kind,
    /// Raw link target, for links.
    target: Vec<u8>,
}

fn display(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Splits an archive path into its components, dropping empty and `.` ones.
fn components(path: &[u8]) -> Components {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

fn unsafe_entry(name: &str, reason: Unsafe) -> ArchiveError {
    ArchiveError::UnsafeEntry {
        entry: name.to_string(),
        reason,
    }
}

/// Checks that `data` is a tar archive that is safe to extract and within `limits`.
pub fn validate(data: &[u8], limits: &Limits) -> Result<Summary, ArchiveError> {
    let malformed = |e: std::io::Error| ArchiveError::Malformed(e.to_string());
    let mut archive = tar::Archive::new(data);
    let mut summary = Summary::default();
    let mut checked: Vec<Checked> = Vec::new();
    let mut symlinks: HashMap<Components, Vec<u8>> = HashMap::new();

    for entry in archive.entries().map_err(malformed)? {
        let entry = entry.map_err(malformed)?;
        summary.entries += 1;
        if summary.entries > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let entry_type = entry.header().entry_type();
        if matches!(entry_type, EntryType::XGlobalHeader) {
            // PAX global metadata (e.g. `git archive`'s commit comment), not a file.
            continue;
        }
        summary.unpacked_bytes = summary.unpacked_bytes.saturating_add(entry.size());
        if summary.unpacked_bytes > limits.max_unpacked_bytes {
            return Err(ArchiveError::TooLarge {
                limit: limits.max_unpacked_bytes,
            });
        }

        let raw_path = entry.path_bytes();
        let name = display(&raw_path);
        if raw_path.is_empty() {
            return Err(unsafe_entry(&name, Unsafe::EmptyPath));
        }
        if raw_path.starts_with(b"/") {
            return Err(unsafe_entry(&name, Unsafe::AbsolutePath));
        }
        let path = components(&raw_path);
        if path.iter().any(|c| c == b"..") {
            return Err(unsafe_entry(&name, Unsafe::ParentComponent));
        }
        if path.is_empty() && !entry_type.is_dir() {
            return Err(unsafe_entry(&name, Unsafe::RootNotDirectory));
        }

        let kind = match entry_type {
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::HardLink,
            _ => Kind::Other,
        };
        let mut target = Vec::new();
        if kind != Kind::Other {
            target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if target.is_empty() {
                return Err(unsafe_entry(&name, Unsafe::EmptyLinkTarget));
            }
            if target.starts_with(b"/") {
                return Err(unsafe_entry(
                    &name,
                    Unsafe::AbsoluteLinkTarget(display(&target)),
                ));
            }
        }
        match kind {
            Kind::HardLink => {
                let parts = components(&target);
                if parts.iter().any(|c| c == b"..") {
                    return Err(unsafe_entry(
                        &name,
                        Unsafe::ParentInLinkTarget(display(&target)),
                    ));
                }
                if parts.is_empty() {
                    return Err(unsafe_entry(&name, Unsafe::LinkEscapes(display(&target))));
                }
            }
            Kind::Symlink => {
                if let Some(previous) = symlinks.insert(path.clone(), target.clone()) {
                    if previous != target {
                        return Err(unsafe_entry(&name, Unsafe::ConflictingLink));
                    }
                }
            }
            Kind::Other => {}
        }
        checked.push(Checked {
            name,
            path,
            kind,
            target,
        });
    }

    if symlinks.is_empty() {
        // Without symlinks every path (hard-link targets included) is lexical, and `..` was refused.
        return Ok(summary);
    }
    for entry in &checked {
        // With no entry beneath a symlink, every entry's name is its real location, so the symlink
        // table below is keyed by real locations and resolving a target through it is exact.
        for depth in 1..entry.path.len() {
            if symlinks.contains_key(&entry.path[..depth]) {
                let link = entry.path[..depth].join(&b'/');
                return Err(unsafe_entry(
                    &entry.name,
                    Unsafe::ThroughLink(display(&link)),
                ));
            }
        }
        let resolved = match entry.kind {
            Kind::Symlink => {
                let mut start = entry.path[..entry.path.len() - 1].to_vec();
                start.extend(entry.target.split(|b| *b == b'/').map(<[u8]>::to_vec));
                resolve(start, &symlinks)
            }
            Kind::HardLink => resolve(components(&entry.target), &symlinks),
            Kind::Other => Ok(()),
        };
        match resolved {
            Ok(()) => {}
            Err(Resolve::Escapes) => {
                return Err(unsafe_entry(
                    &entry.name,
                    Unsafe::LinkEscapes(display(&entry.target)),
                ));
            }
            Err(Resolve::Absolute(t)) => {
                return Err(unsafe_entry(&entry.name, Unsafe::AbsoluteLinkTarget(t)));
            }
            Err(Resolve::Loop) => return Err(unsafe_entry(&entry.name, Unsafe::LinkLoop)),
        }
    }
    Ok(summary)
}

#[derive(Debug, PartialEq, Eq)]
enum Resolve {
    Escapes,
    Absolute(String),
    Loop,
}

/// Resolves `start` (components relative to the archive root) the way a kernel would after extraction,
/// substituting the archive's symlinks, and fails if it ever leaves the root.
fn resolve(start: Components, symlinks: &HashMap<Components, Vec<u8>>) -> Result<(), Resolve> {
    let mut pending: VecDeque<Vec<u8>> = start.into();
    let mut at: Components = Vec::new();
    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        match component.as_slice() {
            b"" | b"." => {}
            b".." => {
                if at.pop().is_none() {
                    return Err(Resolve::Escapes);
                }
            }
            _ => {
                at.push(component);
                if let Some(target) = symlinks.get(&at) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(Resolve::Loop);
                    }
                    if target.starts_with(b"/") {
                        return Err(Resolve::Absolute(display(target)));
                    }
                    at.pop();
                    for part in target.split(|b| *b == b'/').rev() {
                        pending.push_front(part.to_vec());
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::{Builder, Header};

    fn file(builder: &mut Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut header = Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(EntryType::Regular);
        builder.append_data(&mut header, path, data).unwrap();
    }

    fn link(builder: &mut Builder<Vec<u8>>, kind: EntryType, path: &str, target: &str) {
        let mut header = Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o777);
        header.set_entry_type(kind);
        builder.append_link(&mut header, path, target).unwrap();
    }

    /// A header written byte by byte, bypassing the builder's refusal of `..` and absolute paths.
    fn raw_entry(out: &mut Vec<u8>, kind: EntryType, name: &str, target: &str, data: &[u8]) {
        let mut header = Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_entry_type(kind);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }

    fn finish_raw(mut out: Vec<u8>) -> Vec<u8> {
        out.extend_from_slice(&[0; 1024]);
        out
    }

    fn check(data: &[u8]) -> Result<Summary, ArchiveError> {
        validate(data, &Limits::default())
    }

    fn unsafe_reason(data: &[u8]) -> (String, Unsafe) {
        match check(data) {
            Err(ArchiveError::UnsafeEntry { entry, reason }) => (entry, reason),
            other => panic!("expected an unsafe entry, got {other:?}"),
        }
    }

    const MAIN_TF: &[u8] = b"resource \"null_resource\" \"x\" {}\n";

    fn template_tar() -> Vec<u8> {
        let mut b = Builder::new(Vec::new());
        let mut dir = Header::new_gnu();
        dir.set_entry_type(EntryType::Directory);
        dir.set_mode(0o755);
        dir.set_size(0);
        b.append_data(&mut dir, "modules/", std::io::empty())
            .unwrap();
        file(&mut b, "main.tf", MAIN_TF);
        file(&mut b, "modules/a/main.tf", b"# module\n");
        link(&mut b, EntryType::Symlink, "modules/b", "a");
        link(&mut b, EntryType::Symlink, "shared", "modules/a/../a");
        link(&mut b, EntryType::Link, "copy.tf", "main.tf");
        b.into_inner().unwrap()
    }

    #[test]
    fn accepts_an_ordinary_template() {
        let summary = check(&template_tar()).unwrap();
        assert_eq!(summary.entries, 6);
        assert_eq!(summary.unpacked_bytes, MAIN_TF.len() as u64 + 9);
    }

    #[test]
    fn empty_archives_are_valid() {
        assert_eq!(check(&[0; 1024]).unwrap(), Summary::default());
        assert_eq!(check(b"").unwrap(), Summary::default());
        let b = Builder::new(Vec::new());
        assert_eq!(check(&b.into_inner().unwrap()).unwrap().entries, 0);
    }

    #[test]
    fn dot_slash_root_directory_is_fine_but_not_as_a_file() {
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Directory, "./", "", b"");
        raw_entry(&mut out, EntryType::Regular, "./main.tf", "", b"x");
        assert_eq!(check(&finish_raw(out)).unwrap().entries, 2);

        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Regular, "./", "", b"x");
        assert_eq!(unsafe_reason(&finish_raw(out)).1, Unsafe::RootNotDirectory);
    }

    #[test]
    fn rejects_garbage() {
        for data in [&b"this is not a tar"[..], &[0x42; 2048][..]] {
            match check(data) {
                Err(ArchiveError::Malformed(msg)) => assert!(!msg.is_empty()),
                other => panic!("expected malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_truncated_data() {
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Regular, "big", "", &[7; 2000]);
        out.truncate(1024);
        assert!(matches!(check(&out), Err(ArchiveError::Malformed(_))));
    }

    #[test]
    fn rejects_parent_components() {
        for name in ["../evil", "a/../../evil", "a/..", "x/../y"] {
            let mut out = Vec::new();
            raw_entry(&mut out, EntryType::Regular, name, "", b"x");
            let (entry, reason) = unsafe_reason(&finish_raw(out));
            assert_eq!(entry, name);
            assert_eq!(reason, Unsafe::ParentComponent);
        }
    }

    #[test]
    fn rejects_absolute_paths() {
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Regular, "/etc/x", "", b"x");
        let (entry, reason) = unsafe_reason(&finish_raw(out));
        assert_eq!((entry.as_str(), reason), ("/etc/x", Unsafe::AbsolutePath));
    }

    #[test]
    fn rejects_absolute_and_escaping_links() {
        let cases = [
            (EntryType::Symlink, "l", "/etc/passwd"),
            (EntryType::Symlink, "l", ".."),
            (EntryType::Symlink, "a/b/l", "../../../x"),
            (EntryType::Link, "h", "/etc/shadow"),
            (EntryType::Link, "h", "../x"),
            (EntryType::Symlink, "l", ""),
        ];
        for (kind, name, target) in cases {
            let mut b = Builder::new(Vec::new());
            file(&mut b, "ok.tf", b"x");
            let mut out = b.into_inner().unwrap();
            out.truncate(out.len() - 1024);
            raw_entry(&mut out, kind, name, target, b"");
            let (entry, reason) = unsafe_reason(&finish_raw(out));
            assert_eq!(entry, name, "{target}");
            assert!(
                matches!(
                    reason,
                    Unsafe::AbsoluteLinkTarget(_)
                        | Unsafe::LinkEscapes(_)
                        | Unsafe::ParentInLinkTarget(_)
                        | Unsafe::EmptyLinkTarget
                ),
                "{target}: {reason:?}"
            );
        }
    }

    #[test]
    fn links_that_stay_inside_pass() {
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Symlink, "a/b/l", "../../x", b"");
        raw_entry(&mut out, EntryType::Symlink, "a/self", ".", b"");
        assert!(check(&finish_raw(out)).is_ok());
    }

    #[test]
    fn rejects_escape_through_a_chain_of_links() {
        // `d/up` is the root; `d/up/../x` lexically looks like `d/x` but is really outside.
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Symlink, "d/up", "..", b"");
        raw_entry(&mut out, EntryType::Symlink, "d/up2", "up/../x", b"");
        let (entry, reason) = unsafe_reason(&finish_raw(out));
        assert_eq!(entry, "d/up2");
        assert!(matches!(reason, Unsafe::LinkEscapes(_)));

        // A link at the root to its parent.
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Symlink, "up", "..", b"");
        assert!(matches!(
            unsafe_reason(&finish_raw(out)).1,
            Unsafe::LinkEscapes(_)
        ));

        // The first link of a chain that escapes is named, before the hard link that uses it.
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Symlink, "d/up", "..", b"");
        raw_entry(&mut out, EntryType::Symlink, "d/out", "up/..", b"");
        raw_entry(&mut out, EntryType::Link, "h", "d/out/secret", b"");
        let (entry, reason) = unsafe_reason(&finish_raw(out));
        assert_eq!(entry, "d/out");
        assert!(matches!(reason, Unsafe::LinkEscapes(_)));
    }

    #[test]
    fn rejects_entries_beneath_a_symlink() {
        // `d/root` is the archive root, so `d/root/x` would really be `x`, a link to outside; the file
        // is declared before the links it goes through.
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Regular, "d/root/x/f", "", b"x");
        raw_entry(&mut out, EntryType::Symlink, "d/root", "..", b"");
        raw_entry(&mut out, EntryType::Symlink, "d/root/x", "..", b"");
        let (entry, reason) = unsafe_reason(&finish_raw(out));
        assert_eq!(entry, "d/root/x/f");
        assert_eq!(reason, Unsafe::ThroughLink("d/root".into()));

        // Even a harmless link may not have entries beneath it.
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Symlink, "l", "sub", b"");
        raw_entry(&mut out, EntryType::Regular, "l/f", "", b"x");
        assert_eq!(
            unsafe_reason(&finish_raw(out)),
            ("l/f".to_string(), Unsafe::ThroughLink("l".into()))
        );
    }

    #[test]
    fn rejects_link_loops_and_conflicting_links() {
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Symlink, "a", "b", b"");
        raw_entry(&mut out, EntryType::Symlink, "b", "a", b"");
        assert_eq!(unsafe_reason(&finish_raw(out)).1, Unsafe::LinkLoop);

        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Symlink, "a", "x", b"");
        raw_entry(&mut out, EntryType::Symlink, "a", "y", b"");
        assert_eq!(unsafe_reason(&finish_raw(out)).1, Unsafe::ConflictingLink);
    }

    #[test]
    fn enforces_entry_count() {
        let mut b = Builder::new(Vec::new());
        for i in 0..5 {
            file(&mut b, &format!("f{i}"), b"x");
        }
        let data = b.into_inner().unwrap();
        let limits = Limits {
            max_entries: 4,
            ..Limits::default()
        };
        assert!(matches!(
            validate(&data, &limits),
            Err(ArchiveError::TooManyEntries { limit: 4 })
        ));
        let limits = Limits {
            max_entries: 5,
            ..Limits::default()
        };
        assert_eq!(validate(&data, &limits).unwrap().entries, 5);
    }

    #[test]
    fn enforces_unpacked_size() {
        let mut b = Builder::new(Vec::new());
        file(&mut b, "a", &[1; 600]);
        file(&mut b, "b", &[2; 600]);
        let data = b.into_inner().unwrap();
        let limits = Limits {
            max_unpacked_bytes: 1199,
            ..Limits::default()
        };
        assert!(matches!(
            validate(&data, &limits),
            Err(ArchiveError::TooLarge { limit: 1199 })
        ));
        let limits = Limits {
            max_unpacked_bytes: 1200,
            ..Limits::default()
        };
        assert_eq!(validate(&data, &limits).unwrap().unpacked_bytes, 1200);
    }

    #[test]
    fn sparse_entries_count_their_real_size() {
        // 512 stored bytes placed at 1 GiB: a tiny archive that unpacks to over 1 GiB.
        let mut header = Header::new_gnu();
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..6].copy_from_slice(b"sparse");
        gnu.sparse[0].set_offset(1 << 30);
        gnu.sparse[0].set_length(512);
        gnu.set_real_size((1 << 30) + 512);
        header.set_mode(0o644);
        header.set_size(512);
        header.set_entry_type(EntryType::GNUSparse);
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(&[9; 512]);
        let data = finish_raw(out);
        assert!(data.len() < 4096);
        assert!(matches!(
            check(&data),
            Err(ArchiveError::TooLarge {
                limit: MAX_UNPACKED_BYTES
            })
        ));
        let limits = Limits {
            max_unpacked_bytes: u64::MAX,
            ..Limits::default()
        };
        assert_eq!(
            validate(&data, &limits).unwrap().unpacked_bytes,
            (1 << 30) + 512
        );
    }

    #[test]
    fn long_gnu_names_are_checked_too() {
        let long = format!("{}/../../evil", "d".repeat(120));
        let mut out = Vec::new();
        // A GNU long-name extension header carrying the real path.
        let mut header = Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        header.set_mode(0o644);
        header.set_size(long.len() as u64 + 1);
        header.set_entry_type(EntryType::GNULongName);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(long.as_bytes());
        out.push(0);
        out.resize(out.len().div_ceil(512) * 512, 0);
        raw_entry(&mut out, EntryType::Regular, "short", "", b"x");
        let (entry, reason) = unsafe_reason(&finish_raw(out));
        assert_eq!(entry, long);
        assert_eq!(reason, Unsafe::ParentComponent);
    }

    #[test]
    fn error_messages_name_the_entry() {
        let mut out = Vec::new();
        raw_entry(&mut out, EntryType::Symlink, "l", "/etc/passwd", b"");
        let err = check(&finish_raw(out)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry \"l\": it links to the absolute path \"/etc/passwd\""
        );
    }
}
