//! Password hashes for basic auth, in the forms `htpasswd` and `openssl passwd` write and that
//! Traefik accepts: bcrypt (`$2y$…`, `htpasswd -B`), Apache MD5 (`$apr1$…`, `htpasswd -m`,
//! `openssl passwd -apr1`, the example in Traefik's documentation), MD5-crypt (`$1$…`,
//! `openssl passwd -1`) and `{SHA}` (base64 of SHA-1, `htpasswd -s`).
//!
//! The MD5-crypt family is written here (about 40 lines over the `md-5` crate): the crates that
//! do it bundle whole htpasswd-file parsers or system `crypt(3)` bindings. Comparisons run in
//! constant time. MD5 and SHA-1 are weak hashes; they are accepted because existing stacks use
//! them, and `swarmgate check` keeps working with them, but bcrypt is what the docs recommend.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// Longer passwords are refused without hashing: MD5-crypt hashes the password about 2,000
/// times, and a header can carry tens of kilobytes.
const MAX_PASSWORD: usize = 1024;

/// The hash schemes basic auth verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Bcrypt,
    /// `$apr1$` (Apache) or `$1$` (FreeBSD/glibc MD5-crypt): the same algorithm, another magic.
    Md5Crypt,
    Sha1,
}

/// Which scheme `hash` is in, or why it is not usable (the text names the accepted forms).
pub fn scheme(hash: &str) -> Result<Scheme, String> {
    if is_bcrypt(hash) {
        return Ok(Scheme::Bcrypt);
    }
    if let Some(rest) = hash.strip_prefix("$apr1$").or_else(|| hash.strip_prefix("$1$")) {
        let ok = rest
            .split_once('$')
            .is_some_and(|(salt, sum)| salt.len() <= 8 && !salt.is_empty() && sum.len() == 22 && is_crypt64(sum));
        return if ok {
            Ok(Scheme::Md5Crypt)
        } else {
            Err("malformed $apr1$ hash (expected $apr1$salt$22 chars)".into())
        };
    }
    if let Some(sum) = hash.strip_prefix("{SHA}") {
        use base64::Engine;
        return match base64::engine::general_purpose::STANDARD.decode(sum) {
            Ok(d) if d.len() == 20 => Ok(Scheme::Sha1),
            _ => Err("malformed {SHA} hash (expected {SHA} and base64 of 20 bytes)".into()),
        };
    }
    Err("not a supported hash (bcrypt $2y$…, Apache MD5 $apr1$…, or {SHA}…; make one with `htpasswd -nbB user password`)"
        .into())
}

pub fn is_bcrypt(h: &str) -> bool {
    (h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$") || h.starts_with("$2x$")) && h.len() >= 59
}

fn is_crypt64(s: &str) -> bool {
    s.bytes().all(|b| CRYPT64.contains(&b))
}

/// True when `password` matches `hash`. Slow on purpose for bcrypt: call it off the serving
/// threads. Anything malformed is false.
pub fn verify(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    match scheme(hash) {
        Ok(Scheme::Bcrypt) => bcrypt::verify(password, hash).unwrap_or(false),
        Ok(Scheme::Md5Crypt) => {
            let (magic, rest) =
                if let Some(r) = hash.strip_prefix("$apr1$") { ("$apr1$", r) } else { ("$1$", &hash[3..]) };
            let salt = rest.split('$').next().unwrap_or("");
            bool::from(md5_crypt(password.as_bytes(), magic, salt.as_bytes()).as_bytes().ct_eq(hash.as_bytes()))
        }
        Ok(Scheme::Sha1) => {
            use base64::Engine;
            let sum = sha1::Sha1::digest(password.as_bytes());
            let want = base64::engine::general_purpose::STANDARD.decode(&hash[5..]).unwrap_or_default();
            bool::from(sum.as_slice().ct_eq(&want))
        }
        Err(_) => false,
    }
}

const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Poul-Henning Kamp's MD5-crypt, as Apache's `apr_md5.c` computes it: the whole hash string
/// (`magic`, salt, `$`, 22 characters of the 1,000-round digest).
fn md5_crypt(pw: &[u8], magic: &str, salt: &[u8]) -> String {
    let alt = Md5::new().chain_update(pw).chain_update(salt).chain_update(pw).finalize();
    let mut ctx = Md5::new().chain_update(pw).chain_update(magic.as_bytes()).chain_update(salt);
    let mut left = pw.len();
    while left > 0 {
        ctx.update(&alt[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut i = pw.len();
    while i > 0 {
        // The reference code feeds a zeroed byte for set bits, the first password byte otherwise.
        ctx.update(if i & 1 == 1 { &[0u8][..] } else { &pw[..1] });
        i >>= 1;
    }
    let mut sum = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(pw);
        } else {
            c.update(sum);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(pw);
        }
        if round & 1 == 1 {
            c.update(sum);
        } else {
            c.update(pw);
        }
        sum = c.finalize();
    }
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(magic);
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let groups = [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)];
    for (a, b, c) in groups {
        push_crypt64(&mut out, (u32::from(sum[a]) << 16) | (u32::from(sum[b]) << 8) | u32::from(sum[c]), 4);
    }
    push_crypt64(&mut out, u32::from(sum[11]), 2);
    out
}

fn push_crypt64(out: &mut String, mut v: u32, n: usize) {
    for _ in 0..n {
        out.push(char::from(CRYPT64[(v & 0x3f) as usize]));
        v >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl passwd -apr1 -salt abcdefgh 'pass word'`, `openssl passwd -1 -salt xy
    // s3cret`, and `printf '{SHA}'; printf password | openssl sha1 -binary | base64`.
    const APR1: &str = "$apr1$abcdefgh$NriZ3KceyQFy368Ufp8U./";
    const MD5: &str = "$1$xy$Xyayek0k82dUrxDxHwya5.";
    const SHA: &str = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";

    #[test]
    fn openssl_and_htpasswd_hashes_verify() {
        assert!(verify("pass word", APR1));
        assert!(!verify("pass Word", APR1));
        assert!(verify("s3cret", MD5));
        assert!(!verify("s3cre", MD5));
        assert!(verify("password", SHA));
        assert!(!verify("passwore", SHA));
        let b = bcrypt::hash("pw", 4).unwrap();
        assert!(verify("pw", &b) && !verify("pW", &b));
    }

    #[test]
    fn malformed_hashes_are_refused_and_never_match() {
        for bad in
            ["$apr1$$x", "$apr1$toolongsalt$NriZ3KceyQFy368Ufp8U./", "$apr1$abc$short", "{SHA}notbase64!", "plain", ""]
        {
            assert!(scheme(bad).is_err(), "{bad}");
            assert!(!verify("", bad), "{bad}");
        }
        assert!(!verify(&"x".repeat(MAX_PASSWORD + 1), APR1));
    }
}
