//! Request path normalisation, so a path-scoped policy (basic auth on `/admin`) cannot be
//! walked past by spelling the path another way: `/x/../admin`, `/%2e%2e/admin`,
//! `//admin`, `/%61dmin` all name `/admin` to an upstream that normalises, and must name it
//! to the route table too.
//!
//! The rules (documented for users in README.md, "Request paths"):
//! 1. Percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) are
//!    decoded; every other escape is kept as sent (decoding `%20` or `%3F` would change what
//!    the path means).
//! 2. An encoded `/` or `\` (`%2F`, `%5C`) or NUL (`%00`) is ambiguous: servers disagree on
//!    whether `%2F` separates segments (WSGI, Go before 1.22 and others decode it before
//!    routing, so `/admin%2Fusers` is `/admin/users` to them, but one segment here). Such a
//!    path is refused with 400 unless `[server] encoded_slashes = "keep"`, which forwards it
//!    untouched and matches `%2F` as an ordinary character.
//! 3. Empty segments are merged (`//a///b` → `/a/b`), a trailing slash is kept.
//! 4. Dot segments are removed as RFC 3986 §5.2.4 does; `..` never climbs above the root.
//! 5. A malformed escape (`%zz`, a lone `%`) is refused with 400.
//!
//! The query string is never touched. Paths with no `%`, no `/.` and no `//` (nearly all)
//! take a fast path that only scans the bytes once.

use std::borrow::Cow;

pub use crate::config::{EncodedSlashes, PathNormalization};

/// How request paths are treated, fixed at start (`[server]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PathPolicy {
    pub normalization: PathNormalization,
    pub encoded_slashes: EncodedSlashes,
}

impl From<&crate::config::ServerConfig> for PathPolicy {
    fn from(c: &crate::config::ServerConfig) -> Self {
        PathPolicy { normalization: c.path_normalization, encoded_slashes: c.encoded_slashes }
    }
}

/// Why a path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("malformed percent-encoding in the request path")]
    MalformedEscape,
    #[error("encoded slash, backslash or NUL in the request path")]
    EncodedSeparator,
    #[error("request path is not in normal form (dot segments, repeated slashes or needless escapes)")]
    NotNormal,
}

impl PathError {
    /// The 400 response's body.
    pub fn body(self) -> &'static str {
        match self {
            PathError::MalformedEscape => "malformed percent-encoding in the request path\n",
            PathError::EncodedSeparator => "encoded slash, backslash or NUL in the request path\n",
            PathError::NotNormal => "request path is not in normal form\n",
        }
    }
}

/// The path to route and forward by, or why the request is refused.
#[inline]
pub fn normalize(path: &str, policy: PathPolicy) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') || is_plain(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let normal = normalize_slow(path, policy.encoded_slashes)?;
    if policy.normalization == PathNormalization::Reject && normal != path {
        return Err(PathError::NotNormal);
    }
    Ok(if normal == path { Cow::Borrowed(path) } else { Cow::Owned(normal) })
}

/// True when nothing in `p` can need normalising: no `%`, no `/.`, no `//`.
#[inline]
fn is_plain(p: &[u8]) -> bool {
    !p.contains(&b'%') && !p.windows(2).any(|w| w[0] == b'/' && (w[1] == b'.' || w[1] == b'/'))
}

fn normalize_slow(path: &str, slashes: EncodedSlashes) -> Result<String, PathError> {
    let decoded = decode_unreserved(path, slashes)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    // `decoded` starts with '/': the first piece is the empty string before it.
    for seg in decoded.split('/').skip(1) {
        trailing_slash = matches!(seg, "" | "." | "..");
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn decode_unreserved(path: &str, slashes: EncodedSlashes) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(PathError::MalformedEscape)?;
        let value = match (hex_value(hex[0]), hex_value(hex[1])) {
            (Some(h), Some(l)) => h << 4 | l,
            _ => return Err(PathError::MalformedEscape),
        };
        match value {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(value),
            b'/' | b'\\' | 0 if slashes == EncodedSlashes::Reject => return Err(PathError::EncodedSeparator),
            _ => out.extend_from_slice(&bytes[i..i + 3]),
        }
        i += 3;
    }
    // Only ASCII bytes replaced ASCII escapes: still the UTF-8 it was.
    String::from_utf8(out).map_err(|_| PathError::MalformedEscape)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(p: &str) -> Result<Cow<'_, str>, PathError> {
        normalize(p, PathPolicy::default())
    }

    #[test]
    fn normal_paths_are_borrowed_untouched() {
        for p in ["/", "/a/b", "/a/b/", "/static/app.v2.js", "*", "/a-b_c~d"] {
            assert!(matches!(fwd(p), Ok(Cow::Borrowed(q)) if q == p), "{p}");
        }
    }

    #[test]
    fn tricks_that_name_admin_normalise_to_it() {
        for p in [
            "/x/../admin/users",
            "/%2e%2e/admin/users",
            "//admin/users",
            "/%61dmin/users",
            "/./admin//users",
            "/admin/./users",
            "/../../admin/users",
            "/%2E%2E/admin/users",
        ] {
            assert_eq!(fwd(p).unwrap(), "/admin/users", "{p}");
        }
    }

    #[test]
    fn dot_segments_follow_rfc_3986() {
        assert_eq!(fwd("/a/b/c/./../../g").unwrap(), "/a/g");
        assert_eq!(fwd("/a/b/..").unwrap(), "/a/");
        assert_eq!(fwd("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(fwd("/..").unwrap(), "/");
        assert_eq!(fwd("/a/..b/.c").unwrap(), "/a/..b/.c");
        assert_eq!(fwd("/api/../admin").unwrap(), "/admin");
    }

    #[test]
    fn reserved_escapes_are_kept_and_separators_refused() {
        assert_eq!(fwd("/a%20b/%3F").unwrap(), "/a%20b/%3F");
        for p in ["/admin%2Fusers", "/a%2fb", "/a%5Cb", "/a%00", "/..%2F..%2Fadmin"] {
            assert_eq!(fwd(p), Err(PathError::EncodedSeparator), "{p}");
        }
        let keep = PathPolicy { encoded_slashes: EncodedSlashes::Keep, ..Default::default() };
        assert_eq!(normalize("/api/group%2Fproject", keep).unwrap(), "/api/group%2Fproject");
        assert_eq!(normalize("/x/..%2F", keep).unwrap(), "/x/..%2F");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for p in ["/a%", "/a%4", "/a%zz", "/%g1"] {
            assert_eq!(fwd(p), Err(PathError::MalformedEscape), "{p}");
        }
    }

    #[test]
    fn reject_mode_refuses_what_forward_mode_rewrites() {
        let reject = PathPolicy { normalization: PathNormalization::Reject, ..Default::default() };
        assert_eq!(normalize("/x/../admin", reject), Err(PathError::NotNormal));
        assert_eq!(normalize("//admin", reject), Err(PathError::NotNormal));
        assert_eq!(normalize("/%61dmin", reject), Err(PathError::NotNormal));
        assert_eq!(normalize("/a%20b", reject).unwrap(), "/a%20b");
        assert_eq!(normalize("/a/b", reject).unwrap(), "/a/b");
    }
}
