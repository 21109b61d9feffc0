//! caddy-docker-proxy's label grammar: label keys → a Caddyfile block tree, values → templates →
//! Caddyfile tokens, merging of blocks across services, and a Caddyfile rendering for `check`.
//!
//! This follows CDP's `caddyfile/fromlabels.go`, `lexer.go`, `merge.go` and `marshal.go`
//! (see reference/caddy-docker-proxy.md §1); the interpretation of the directives lives in
//! the parent module.

use std::cmp::Ordering;

use crate::labels::ServiceInput;
use crate::model::UpstreamScheme;

/// Marks a token that stands for `{{upstreams …}}`: `\u{1}<index into the upstream list>\u{1}`.
/// Discovery resolves the tasks later, so the template cannot render addresses.
const UP_MARK: char = '\u{1}';

/// Where a block was written: the service (index into the ordered service list) and the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    pub service: usize,
    pub key: String,
}

/// One Caddyfile block: `name args… { children }`. Top-level blocks have no name; their args
/// are the site addresses, the snippet name `(x)`, or nothing (global options).
#[derive(Debug, Clone)]
pub(super) struct Block {
    /// Unique within one translation, so a block found invalid can be removed before merging.
    pub id: u32,
    pub name: String,
    /// The `N_` prefix; `u32::MAX` when there is none (sorts after every ordered sibling).
    pub order: u32,
    pub args: Vec<String>,
    pub children: Vec<Block>,
    pub origin: Origin,
}

/// What `{{upstreams [scheme] [port]}}` asked for, in the service that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UpstreamRef {
    pub service: usize,
    pub network: Option<String>,
    pub scheme: Option<UpstreamScheme>,
    pub port: Option<u16>,
}

/// The upstream reference a token stands for, if it is one.
pub(super) fn upstream_index(token: &str) -> Option<usize> {
    token.strip_prefix(UP_MARK)?.strip_suffix(UP_MARK)?.parse().ok()
}

/// True when a token contains an upstream reference glued to other text.
pub(super) fn has_upstream_mark(token: &str) -> bool {
    token.contains(UP_MARK)
}

/// `caddy`, `caddy_0`, … : the root segment of a label key with the given prefix, or `None`
/// when the key is not a caddy config label (`caddy_ingress_network`, `caddyversion`, …).
fn split_root<'a>(key: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = key.strip_prefix(prefix)?;
    let digits_end = match rest.strip_prefix('_') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return None;
            }
            1 + n
        }
        None => 0,
    };
    let (root_tail, after) = rest.split_at(digits_end);
    let root = &key[..prefix.len() + root_tail.len()];
    if after.is_empty() {
        Some((root, ""))
    } else {
        after.strip_prefix('.').map(|path| (root, path))
    }
}

/// Splits a key path at dots that are not escaped; `\.` is a literal dot.
fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                cur.push('.');
                chars.next();
            }
            '.' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `N_name_M` → (`N`, `name`): the prefix orders and isolates, the suffix only isolates.
fn parse_segment(seg: &str) -> (u32, String) {
    let mut order = u32::MAX;
    let mut name = seg;
    let digits = seg.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && seg.as_bytes().get(digits) == Some(&b'_') && seg.len() > digits + 1 {
        if let Ok(n) = seg[..digits].parse() {
            order = n;
            name = &seg[digits + 1..];
        }
    }
    if let Some(us) = name.rfind('_') {
        let tail = &name[us + 1..];
        if us > 0 && !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            name = &name[..us];
        }
    }
    (order, name.to_owned())
}

/// Caddyfile tokenising of one label value: whitespace separates; `"…"` quotes (with `\"`),
/// `` `…` `` quotes without escapes; a `#` starting a token comments out the rest of the line.
pub(super) fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut val = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut bt = false;
    let mut escaped = false;
    let mut comment = false;
    for ch in s.chars() {
        if quoted || bt {
            if quoted && escaped {
                if ch != '"' {
                    val.push('\\');
                }
                val.push(ch);
                escaped = false;
                continue;
            }
            if (quoted && ch == '"') || (bt && ch == '`') {
                out.push(std::mem::take(&mut val));
                quoted = false;
                bt = false;
                in_token = false;
                continue;
            }
            if quoted && ch == '\\' {
                escaped = true;
                continue;
            }
            val.push(ch);
            continue;
        }
        if comment {
            if ch == '\n' {
                comment = false;
            }
            continue;
        }
        if ch.is_whitespace() {
            if in_token {
                out.push(std::mem::take(&mut val));
                in_token = false;
            }
            continue;
        }
        if !in_token {
            match ch {
                '#' => {
                    comment = true;
                    continue;
                }
                '"' => {
                    quoted = true;
                    in_token = true;
                    continue;
                }
                '`' => {
                    bt = true;
                    in_token = true;
                    continue;
                }
                _ => {}
            }
        }
        in_token = true;
        val.push(ch);
    }
    if escaped {
        val.push('\\');
    }
    if in_token {
        out.push(val);
    }
    out
}

/// Renders the Go templates CDP supports in label values. `{{upstreams …}}` becomes a marker
/// token; any other template is an error for this service only.
fn render_template(
    value: &str,
    svc: &ServiceInput,
    service: usize,
    network: Option<&str>,
    ups: &mut Vec<UpstreamRef>,
) -> Result<String, String> {
    if !value.contains("{{") {
        return Ok(value.to_owned());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("unclosed template in {value:?}"))?;
        let mut action = after[..end].trim();
        action = action.strip_prefix('-').unwrap_or(action).trim();
        action = action.strip_suffix('-').unwrap_or(action).trim();
        out.push_str(&render_action(action, svc, service, network, ups)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn render_action(
    action: &str,
    svc: &ServiceInput,
    service: usize,
    network: Option<&str>,
    ups: &mut Vec<UpstreamRef>,
) -> Result<String, String> {
    let words = tokenize(action);
    let unsupported = || {
        format!(
            "template {{{{{action}}}}} is not supported (supported: upstreams [http|https|h2c] [PORT], .Spec.Name, .ID, index .Spec.Labels \"key\")"
        )
    };
    let Some(first) = words.first() else {
        return Ok(String::new());
    };
    let quoted_first = action.starts_with('"') || action.starts_with('`');
    match first.as_str() {
        "upstreams" if !quoted_first => {
            let mut r = UpstreamRef { service, network: network.map(Into::into), scheme: None, port: None };
            for (i, w) in words.iter().enumerate().skip(1) {
                // Quoted words are Go strings (schemes), bare numbers are ints (ports).
                match w.as_str() {
                    "http" => r.scheme = Some(UpstreamScheme::Http),
                    "https" => r.scheme = Some(UpstreamScheme::Https),
                    "h2c" => r.scheme = Some(UpstreamScheme::H2c),
                    n if n.bytes().all(|b| b.is_ascii_digit()) && !is_quoted_word(action, i) => {
                        match n.parse::<u16>() {
                            Ok(p) if p > 0 && r.port.is_none() => r.port = Some(p),
                            Ok(_) if r.port.is_some() => {
                                return Err(format!("{{{{{action}}}}}: give at most one port"))
                            }
                            _ => return Err(format!("{{{{{action}}}}}: {n} is not a port")),
                        }
                    }
                    other => {
                        return Err(format!(
                            "{{{{{action}}}}}: {other:?} is neither a scheme (http, https, h2c) nor a port number"
                        ))
                    }
                }
            }
            ups.push(r);
            Ok(format!("{UP_MARK}{}{UP_MARK}", ups.len() - 1))
        }
        "http" | "https" | "h2c" if words.len() == 1 && !quoted_first => Ok(first.clone()),
        ".Spec.Name" if words.len() == 1 => Ok(svc.name.clone()),
        ".ID" if words.len() == 1 => Ok(svc.id.clone()),
        "index" if words.len() == 3 && words[1] == ".Spec.Labels" => {
            Ok(svc.labels.get(&words[2]).cloned().unwrap_or_default())
        }
        _ if quoted_first && words.len() == 1 => Ok(first.clone()),
        _ if action.is_empty() => Ok(String::new()),
        _ => Err(unsupported()),
    }
}

/// True when the `i`-th word of a template action was written in quotes (a Go string).
fn is_quoted_word(action: &str, i: usize) -> bool {
    action.split_whitespace().nth(i).is_some_and(|w| w.starts_with('"') || w.starts_with('`'))
}

/// The deepest label key accepted (`caddy.handle.reverse_proxy.transport.…`). Real Caddyfiles
/// nest a handful of levels.
pub(super) const MAX_DEPTH: usize = 32;

/// A label tree node before names and order are parsed.
struct RawNode {
    seg: String,
    key: String,
    value: Option<Vec<String>>,
    children: Vec<RawNode>,
}

fn insert(nodes: &mut Vec<RawNode>, path: &[String], parent_key: &str, full_key: &str, tokens: Vec<String>) {
    let seg = &path[0];
    let idx = match nodes.iter().position(|n| &n.seg == seg) {
        Some(i) => i,
        None => {
            let key =
                if parent_key.is_empty() { seg.clone() } else { format!("{parent_key}.{}", seg.replace('.', "\\.")) };
            nodes.push(RawNode { seg: seg.clone(), key, value: None, children: Vec::new() });
            nodes.len() - 1
        }
    };
    let node = &mut nodes[idx];
    if path.len() == 1 {
        node.key = full_key.to_owned();
        node.value = Some(tokens);
    } else {
        let pk = node.key.clone();
        insert(&mut node.children, &path[1..], &pk, full_key, tokens);
    }
}

fn to_block(n: RawNode, top: bool, service: usize, next_id: &mut u32) -> Block {
    let (order, name) = if top { (u32::MAX, String::new()) } else { parse_segment(&n.seg) };
    *next_id += 1;
    let id = *next_id;
    let mut children: Vec<Block> = n.children.into_iter().map(|c| to_block(c, false, service, next_id)).collect();
    sort_blocks(&mut children);
    Block { id, name, order, args: n.value.unwrap_or_default(), children, origin: Origin { service, key: n.key } }
}

/// One service's caddy labels as top-level blocks, or the reason they were all refused (a
/// template error fails every caddy label of that service, as in CDP: never half-applied).
pub(super) fn parse_service(
    svc: &ServiceInput,
    service: usize,
    prefix: &str,
    ups: &mut Vec<UpstreamRef>,
    next_id: &mut u32,
) -> Result<Vec<Block>, (String, String)> {
    let network = svc.labels.get("caddy_ingress_network").map(|s| s.trim()).filter(|s| !s.is_empty());
    let mut roots: Vec<RawNode> = Vec::new();
    let mark = ups.len();
    for (key, value) in &svc.labels {
        let Some((root, path)) = split_root(key, prefix) else {
            continue;
        };
        if value.contains(UP_MARK) {
            // The marker is ours; a label must not forge a reference to another service's tasks.
            ups.truncate(mark);
            return Err((
                key.clone(),
                format!("control character U+0001 in the value; every {prefix} label of this service is ignored"),
            ));
        }
        let rendered = match render_template(value, svc, service, network, ups) {
            Ok(r) => r,
            Err(e) => {
                ups.truncate(mark);
                return Err((key.clone(), format!("{e}; every {prefix} label of this service is ignored")));
            }
        };
        let tokens = tokenize(&rendered);
        let mut segs = vec![root.to_owned()];
        if !path.is_empty() {
            segs.extend(split_path(path));
        }
        if segs.iter().any(String::is_empty) {
            ups.truncate(mark);
            return Err((key.clone(), format!("empty key segment; every {prefix} label of this service is ignored")));
        }
        if segs.len() > MAX_DEPTH {
            // Building and reading the tree recurses once per level: an unbounded depth would
            // overflow the stack, which no panic handler can catch.
            ups.truncate(mark);
            return Err((
                key.clone(),
                format!(
                    "nested {} levels deep (at most {MAX_DEPTH}); every {prefix} label of this service is ignored",
                    segs.len()
                ),
            ));
        }
        insert(&mut roots, &segs, "", key, tokens);
    }
    Ok(roots.into_iter().map(|r| to_block(r, true, service, next_id)).collect())
}

/// CDP's sibling order: matchers first, then `N_` order, then the tokens byte-wise, then fewer
/// tokens first. Stable, so equal blocks keep label order.
pub(super) fn sort_blocks(blocks: &mut [Block]) {
    blocks.sort_by(|a, b| {
        let am = a.name.starts_with('@');
        let bm = b.name.starts_with('@');
        bm.cmp(&am)
            .then(a.order.cmp(&b.order))
            .then_with(|| {
                let ka = std::iter::once(&a.name).chain(a.args.iter());
                let kb = std::iter::once(&b.name).chain(b.args.iter());
                for (x, y) in ka.zip(kb) {
                    match x.as_bytes().cmp(y.as_bytes()) {
                        Ordering::Equal => {}
                        o => return o,
                    }
                }
                Ordering::Equal
            })
            .then(a.args.len().cmp(&b.args.len()))
    });
}

/// The matcher token of a `reverse_proxy` for merging: token 1 if it is `*`, a path or `@name`.
fn proxy_matcher(b: &Block) -> &str {
    match b.args.first() {
        Some(a) if a == "*" || a.starts_with('/') || a.starts_with('@') => a,
        _ => "*",
    }
}

/// Merges `src` children into `dst` the way CDP does: `reverse_proxy` with the same matcher
/// concatenates upstreams; identical blocks merge their children; anything else is appended.
pub(super) fn merge_children(dst: &mut Vec<Block>, src: Vec<Block>) {
    for b in src {
        if b.name == "reverse_proxy" {
            if let Some(a) = dst.iter_mut().find(|a| a.name == b.name && proxy_matcher(a) == proxy_matcher(&b)) {
                let skip = usize::from(proxy_matcher(&b) != "*" || b.args.first().is_some_and(|x| x == "*"));
                a.args.extend(b.args.into_iter().skip(skip));
                merge_children(&mut a.children, b.children);
                continue;
            }
        }
        if let Some(a) = dst.iter_mut().find(|a| a.name == b.name && a.args == b.args) {
            merge_children(&mut a.children, b.children);
            continue;
        }
        dst.push(b);
    }
    sort_blocks(dst);
}

/// Removes every block whose id is in `ids`, at any depth.
pub(super) fn remove_ids(blocks: &mut Vec<Block>, ids: &std::collections::BTreeSet<u32>) {
    blocks.retain(|b| !ids.contains(&b.id));
    for b in blocks {
        remove_ids(&mut b.children, ids);
    }
}

/// Writes blocks as Caddyfile text (what CDP would have generated), for `check` output.
pub(super) fn write_blocks(
    out: &mut String,
    blocks: &[Block],
    depth: usize,
    top: bool,
    ups: &[UpstreamRef],
    names: &[&str],
) {
    for b in blocks {
        for _ in 0..depth {
            out.push('\t');
        }
        let mut tokens: Vec<&String> = Vec::new();
        if !top {
            tokens.push(&b.name);
        }
        tokens.extend(b.args.iter());
        let line: Vec<String> = tokens.iter().map(|t| quote(t, ups, names)).collect();
        out.push_str(&line.join(" "));
        if !b.children.is_empty() {
            if !line.is_empty() {
                out.push(' ');
            }
            out.push_str("{\n");
            write_blocks(out, &b.children, depth + 1, false, ups, names);
            for _ in 0..depth {
                out.push('\t');
            }
            out.push('}');
        }
        out.push('\n');
    }
}

fn quote(t: &str, ups: &[UpstreamRef], names: &[&str]) -> String {
    if let Some(r) = upstream_index(t).and_then(|i| ups.get(i)) {
        let scheme = match r.scheme {
            Some(UpstreamScheme::Https) => "https://",
            Some(UpstreamScheme::H2c) => "h2c://",
            Some(UpstreamScheme::Http) => "http://",
            None => "",
        };
        let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
        let net = r.network.as_deref().map(|n| format!("@{n}")).unwrap_or_default();
        return format!("{scheme}tasks.{}{net}{port}", names.get(r.service).copied().unwrap_or("?"));
    }
    if t.contains('\n') || t.contains('"') {
        format!("`{t}`")
    } else if t.contains(char::is_whitespace) || t.is_empty() {
        format!("\"{t}\"")
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parse_order_and_isolation() {
        assert_eq!(parse_segment("0_uri"), (0, "uri".into()));
        assert_eq!(parse_segment("redir_1"), (u32::MAX, "redir".into()));
        assert_eq!(parse_segment("12_header_3"), (12, "header".into()));
        assert_eq!(parse_segment("@ws"), (u32::MAX, "@ws".into()));
        assert_eq!(parse_segment("5"), (u32::MAX, "5".into()));
    }

    #[test]
    fn roots_are_filtered_like_cdp() {
        assert_eq!(split_root("caddy", "caddy"), Some(("caddy", "")));
        assert_eq!(split_root("caddy_12.reverse_proxy", "caddy"), Some(("caddy_12", "reverse_proxy")));
        assert_eq!(split_root("caddy_ingress_network", "caddy"), None);
        assert_eq!(split_root("caddyversion", "caddy"), None);
        assert_eq!(split_root("caddy_.x", "caddy"), None);
    }

    #[test]
    fn tokenizer_handles_quotes_backticks_comments() {
        assert_eq!(tokenize(r#"a "b c" `{"x":1}` d"#), ["a", "b c", r#"{"x":1}"#, "d"]);
        assert_eq!(tokenize(r#""a\"b""#), [r#"a"b"#]);
        assert_eq!(tokenize("color #fff"), ["color"]);
        assert_eq!(tokenize("\"unterminated"), ["unterminated"]);
        assert_eq!(tokenize(""), Vec::<String>::new());
        assert_eq!(tokenize("\"\""), [""]);
    }

    #[test]
    fn escaped_dots_stay_literal() {
        assert_eq!(split_path(r"x.domains.mydomain\.fr"), ["x", "domains", "mydomain.fr"]);
    }
}
