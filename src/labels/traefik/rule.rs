//! Traefik's router rule language (v3, with the v2 spellings that still mean the same thing):
//! matchers `Host`, `HostRegexp`, `Path`, `PathPrefix`, `Header`, `HeaderRegexp`, `Method`,
//! `Query`, `QueryRegexp`, `ClientIP`, joined with `&&`, `||`, `!` and parentheses; arguments in
//! backticks or double quotes. Matcher names are case-insensitive.
//!
//! A rule becomes one or more [`RulePart`]s (its disjunctive normal form) so that every route
//! has explicit host names for the host index. A part without a `Host` is refused: labels may
//! not create catch-all routes.

use crate::labels::common::label_host;
use crate::model::{PathMatch, Predicate, ValueMatch};

/// A parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// Canonical lower-case matcher name and its arguments.
    Matcher(String, Vec<String>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
}

fn lex(rule: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = rule.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::LParen),
            ')' => out.push(Tok::RParen),
            ',' => out.push(Tok::Comma),
            '!' => out.push(Tok::Not),
            '&' | '|' => {
                if chars.next().map(|(_, d)| d) != Some(c) {
                    return Err(format!("expected {c}{c} at position {i}"));
                }
                out.push(if c == '&' { Tok::And } else { Tok::Or });
            }
            '`' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, '`')) => break,
                        Some((_, ch)) => s.push(ch),
                        None => return Err("unterminated ` string".into()),
                    }
                }
                out.push(Tok::Str(s));
            }
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, ch)) => s.push(ch),
                            None => return Err("unterminated \" string".into()),
                        },
                        Some((_, ch)) => s.push(ch),
                        None => return Err("unterminated \" string".into()),
                    }
                }
                out.push(Tok::Str(s));
            }
            '\'' => return Err("single quotes are not allowed; use backticks (`…`) or double quotes".into()),
            c if c.is_ascii_alphabetic() => {
                let mut s = String::from(c);
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(s));
            }
            other => return Err(format!("unexpected {other:?} at position {i}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::Or(items) })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { Expr::And(items) })
    }

    fn unary(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("rule is nested too deeply".into());
        }
        let r = match self.next() {
            Some(Tok::Not) => Ok(Expr::Not(Box::new(self.unary()?))),
            Some(Tok::LParen) => {
                let e = self.or()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err("missing )".into()),
                }
            }
            Some(Tok::Ident(name)) => self.matcher(name),
            Some(t) => Err(format!("unexpected {t:?}; expected a matcher such as Host(`example.com`)")),
            None => Err("rule ends too early".into()),
        };
        self.depth -= 1;
        r
    }

    fn matcher(&mut self, name: String) -> Result<Expr, String> {
        let canon = canonical(&name).ok_or_else(|| {
            format!("unknown matcher {name} (known: Host, HostRegexp, Path, PathPrefix, Header, HeaderRegexp, Method, Query, QueryRegexp, ClientIP)")
        })?;
        if self.next() != Some(Tok::LParen) {
            return Err(format!("{name} must be followed by ("));
        }
        let mut args = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Str(s)) => args.push(s),
                Some(Tok::RParen) if args.is_empty() => break,
                _ => return Err(format!("{name}: arguments are strings in backticks or double quotes")),
            }
            match self.next() {
                Some(Tok::Comma) => {}
                Some(Tok::RParen) => break,
                _ => return Err(format!("{name}: expected , or )")),
            }
        }
        let ok = match canon {
            "header" | "headerregexp" | "queryregexp" => args.len() == 2,
            "query" => (1..=2).contains(&args.len()),
            // v2 allowed several hosts, methods, client IPs (and paths); they mean "any of".
            "host" | "method" | "clientip" | "path" | "pathprefix" => !args.is_empty(),
            _ => args.len() == 1,
        };
        if !ok {
            return Err(format!("{name}: wrong number of arguments ({})", args.len()));
        }
        Ok(Expr::Matcher(canon.to_owned(), args))
    }
}

fn canonical(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "host" | "hostheader" => "host",
        "hostregexp" => "hostregexp",
        "path" => "path",
        "pathprefix" => "pathprefix",
        "pathregexp" => "pathregexp",
        "header" | "headers" => "header",
        "headerregexp" | "headersregexp" => "headerregexp",
        "method" => "method",
        "query" => "query",
        "queryregexp" => "queryregexp",
        "clientip" => "clientip",
        _ => return None,
    })
}

/// Parses a rule.
pub(crate) fn parse(rule: &str) -> Result<Expr, String> {
    let toks = lex(rule)?;
    if toks.is_empty() {
        return Err("empty rule".into());
    }
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?} after the rule", p.toks[p.pos]));
    }
    Ok(e)
}

/// One alternative of a rule: hosts, the path (if one was given), and any other conditions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RulePart {
    pub hosts: Vec<String>,
    pub path: PathMatch,
    pub predicate: Option<Predicate>,
}

/// A literal of the disjunctive normal form.
#[derive(Clone)]
enum Lit<'a> {
    M(&'a str, &'a [String]),
    Not(&'a Expr),
}

const MAX_ALTERNATIVES: usize = 32;

fn dnf(e: &Expr) -> Result<Vec<Vec<Lit<'_>>>, String> {
    Ok(match e {
        Expr::Matcher(n, a) => vec![vec![Lit::M(n, a)]],
        Expr::Not(x) => vec![vec![Lit::Not(x)]],
        Expr::Or(cs) => {
            let mut out = Vec::new();
            for c in cs {
                out.extend(dnf(c)?);
                if out.len() > MAX_ALTERNATIVES {
                    return Err("rule has too many alternatives".into());
                }
            }
            out
        }
        Expr::And(cs) => {
            let mut acc: Vec<Vec<Lit<'_>>> = vec![Vec::new()];
            for c in cs {
                let alts = dnf(c)?;
                if acc.len() * alts.len() > MAX_ALTERNATIVES {
                    return Err("rule has too many alternatives".into());
                }
                acc = acc
                    .iter()
                    .flat_map(|a| alts.iter().map(move |b| a.iter().chain(b.iter()).cloned().collect()))
                    .collect();
            }
            acc
        }
    })
}

fn path_arg(p: &str) -> Result<&str, String> {
    if p.starts_with('/') {
        Ok(p)
    } else {
        Err(format!("path {p:?} must start with /"))
    }
}

fn client_ip(s: &str) -> Result<Predicate, String> {
    let (net, prefix_len) = crate::model::parse_cidr(s).map_err(|e| format!("ClientIP {e}"))?;
    Ok(Predicate::ClientIp { net, prefix_len })
}

fn any_of(mut ps: Vec<Predicate>) -> Predicate {
    if ps.len() == 1 {
        ps.remove(0)
    } else {
        Predicate::Or(ps)
    }
}

/// Any sub-expression as a request predicate (for `!`, and conditions next to the host).
fn predicate(e: &Expr) -> Result<Predicate, String> {
    Ok(match e {
        Expr::And(cs) => Predicate::And(cs.iter().map(predicate).collect::<Result<_, _>>()?),
        Expr::Or(cs) => Predicate::Or(cs.iter().map(predicate).collect::<Result<_, _>>()?),
        Expr::Not(x) => Predicate::Not(Box::new(predicate(x)?)),
        Expr::Matcher(n, a) => matcher_predicate(n, a)?,
    })
}

fn matcher_predicate(name: &str, a: &[String]) -> Result<Predicate, String> {
    Ok(match name {
        "host" => any_of(a.iter().map(|h| label_host(h).map(Predicate::Host)).collect::<Result<_, _>>()?),
        "path" => any_of(
            a.iter()
                .map(|p| path_arg(p).map(|p| Predicate::Path(PathMatch::Exact(p.into()))))
                .collect::<Result<_, _>>()?,
        ),
        "pathprefix" => any_of(
            a.iter()
                .map(|p| path_arg(p).map(|p| Predicate::Path(PathMatch::RawPrefix(p.into()))))
                .collect::<Result<_, _>>()?,
        ),
        "header" => Predicate::Header { name: a[0].clone(), value: ValueMatch::Exact(a[1].clone()) },
        "headerregexp" => Predicate::Header { name: a[0].clone(), value: ValueMatch::Regex(a[1].clone()) },
        "method" => Predicate::Method(a.iter().map(|m| m.to_ascii_uppercase()).collect()),
        "query" => match a {
            [k] => match k.split_once('=') {
                // v2 wrote Query(`key=value`).
                Some((k, v)) => Predicate::Query { name: k.into(), value: ValueMatch::Exact(v.into()) },
                None => Predicate::Query { name: k.clone(), value: ValueMatch::Present },
            },
            [k, v] => Predicate::Query { name: k.clone(), value: ValueMatch::Exact(v.clone()) },
            _ => return Err("Query takes a key and an optional value".into()),
        },
        "queryregexp" => Predicate::Query { name: a[0].clone(), value: ValueMatch::Regex(a[1].clone()) },
        "clientip" => any_of(a.iter().map(|s| client_ip(s)).collect::<Result<_, _>>()?),
        "hostregexp" => {
            return Err(
                "HostRegexp can only stand next to the other conditions of a rule (joined by &&), not inside ! or ||"
                    .into(),
            )
        }
        "pathregexp" => return Err("PathRegexp is not supported; use Path or PathPrefix".into()),
        other => return Err(format!("matcher {other} is not supported")),
    })
}

/// Patterns real stacks use for "any host": `{host:.+}` (v2), `.+`, `.*`, `^.+$`.
fn matches_every_host(re: &str) -> bool {
    let body = re.trim().strip_prefix('^').unwrap_or(re.trim());
    let body = body.strip_suffix('$').unwrap_or(body);
    let body = match body.strip_prefix('{').and_then(|b| b.strip_suffix('}')) {
        Some(inner) => inner.split_once(':').map_or("", |(_, p)| p),
        None => body,
    };
    matches!(body, ".+" | ".*" | "(.+)" | "(.*)" | "[^/]+" | "[a-z0-9.-]+")
}

/// `HostRegexp(`^[a-z0-9-]+\.example\.com$`)` → `*.example.com` when the pattern is "one label
/// under a fixed domain" (the only regex a host index can serve). The note says when the
/// regex allowed more than one label, since only one is served.
fn host_regexp(re: &str) -> Result<(String, Option<String>), String> {
    let body = re.strip_prefix('^').unwrap_or(re);
    let body = body.strip_suffix('$').unwrap_or(body);
    let refuse = || {
        format!(
            "HostRegexp(`{re}`) cannot be served from a host index; use Host(`*.example.com`) for one-label wildcards"
        )
    };
    // v2: {name:pattern}.example.com
    let (label, rest) = if let Some(b) = body.strip_prefix('{') {
        let end = b.find('}').ok_or_else(refuse)?;
        let inner = &b[..end];
        let pat = inner.split_once(':').map(|(_, p)| p).unwrap_or("[^.]+");
        (pat, b[end + 1..].strip_prefix('.').ok_or_else(refuse)?)
    } else {
        let i = body.find("\\.").ok_or_else(refuse)?;
        (&body[..i], &body[i + 2..])
    };
    const ONE_LABEL: &[&str] = &[
        "[a-z0-9-]+",
        "[a-zA-Z0-9-]+",
        "[0-9a-z-]+",
        "[a-z0-9]+",
        "[a-z]+",
        "[^.]+",
        "\\w+",
        "[a-z0-9_-]+",
        "[a-zA-Z0-9_-]+",
    ];
    const MANY_LABELS: &[&str] = &[".+", ".*", "(.+)", "(.*)", "[a-z0-9.-]+"];
    let note = if ONE_LABEL.contains(&label) {
        None
    } else if MANY_LABELS.contains(&label) {
        Some(format!("HostRegexp(`{re}`) is served as one-label wildcard *.{}", rest.replace("\\.", ".")))
    } else {
        return Err(refuse());
    };
    if rest.contains(['*', '+', '?', '(', '[', '{', '|']) {
        return Err(refuse());
    }
    let domain = rest.replace("\\.", ".");
    if domain.contains('\\') {
        return Err(refuse());
    }
    let host = label_host(&format!("*.{domain}"))?;
    Ok((host, note))
}

/// The routes a rule needs, plus notes on how it was read.
/// `catch_all`: `[labels] allow_catch_all` — a rule without `Host` (or with a match-everything
/// `HostRegexp`) may become a default route for every host no other route claims.
pub(crate) fn parts(rule: &Expr, catch_all: bool) -> Result<(Vec<RulePart>, Vec<String>), String> {
    let mut notes = Vec::new();
    let mut out: Vec<RulePart> = Vec::new();
    for conj in dnf(rule)? {
        let mut hosts: Option<Vec<String>> = None;
        let mut path: Option<PathMatch> = None;
        let mut preds = Vec::new();
        let mut contradictory = false;
        for lit in conj {
            match lit {
                Lit::M(name @ ("host" | "hostregexp"), args) => {
                    let hs = if name == "host" {
                        args.iter().map(|h| label_host(h)).collect::<Result<Vec<_>, _>>()?
                    } else {
                        if matches_every_host(&args[0]) {
                            if !catch_all {
                                return Err(format!("HostRegexp(`{}`) matches every host name; labels create such a default route only with [labels] allow_catch_all = true", args[0]));
                            }
                            vec!["*".to_owned()]
                        } else {
                            let (h, note) = host_regexp(&args[0])?;
                            notes.extend(note);
                            vec![h]
                        }
                    };
                    hosts = Some(match hosts {
                        None => hs,
                        Some(prev) => {
                            let both: Vec<String> = prev.into_iter().filter(|h| hs.contains(h)).collect();
                            if both.is_empty() {
                                contradictory = true;
                            }
                            both
                        }
                    });
                }
                Lit::M(name @ ("path" | "pathprefix"), [p]) if path.is_none() => {
                    let p = path_arg(p)?;
                    path =
                        Some(if name == "path" { PathMatch::Exact(p.into()) } else { PathMatch::RawPrefix(p.into()) });
                }
                Lit::M(name, args) => preds.push(matcher_predicate(name, args)?),
                Lit::Not(x) => preds.push(Predicate::Not(Box::new(predicate(x)?))),
            }
        }
        if contradictory {
            notes.push("an alternative of the rule requires two different Host values at once and can never match; it is left out".into());
            continue;
        }
        let hosts = match hosts {
            Some(h) => h,
            None if catch_all => vec!["*".to_owned()],
            None => return Err("every alternative of the rule needs a Host(`…`) matcher: labels create routes for every host name only with [labels] allow_catch_all = true".into()),
        };
        let predicate = match preds.len() {
            0 => None,
            1 => preds.pop(),
            _ => Some(Predicate::And(preds)),
        };
        let path = path.unwrap_or_else(PathMatch::any);
        // `Host(a) || Host(b)` is one route with two hosts.
        match out.iter_mut().find(|p| p.path == path && p.predicate == predicate) {
            Some(p) => {
                for h in hosts {
                    if !p.hosts.contains(&h) {
                        p.hosts.push(h);
                    }
                }
            }
            None => out.push(RulePart { hosts, path, predicate }),
        }
    }
    if out.is_empty() {
        return Err("the rule can never match".into());
    }
    Ok((out, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(rule: &str) -> RulePart {
        let (p, _) = parts(&parse(rule).unwrap(), false).unwrap();
        assert_eq!(p.len(), 1, "{p:?}");
        p.into_iter().next().unwrap()
    }

    #[test]
    fn precedence_and_quotes() {
        let e = parse("Host(`a.com`) && Path(\"/x\") || Host(`b.com`)").unwrap();
        assert!(matches!(e, Expr::Or(ref v) if v.len() == 2));
        assert!(parse("Host('a.com')").is_err());
        assert!(parse("Host(`a.com`) &&").is_err());
        assert!(parse("Hots(`a.com`)").is_err());
        assert!(parse("PATHPREFIX(`/a`) && host(`a.com`)").is_ok());
    }

    #[test]
    fn hosts_are_extracted_and_or_of_hosts_is_one_part() {
        let p = one("Host(`a.com`) || Host(`B.com`)");
        assert_eq!(p.hosts, ["a.com", "b.com"]);
        let p = one("(Host(`a.com`) || Host(`b.com`)) && PathPrefix(`/api`) && Method(`GET`)");
        assert_eq!(p.hosts, ["a.com", "b.com"]);
        assert_eq!(p.path, PathMatch::RawPrefix("/api".into()));
        assert_eq!(p.predicate, Some(Predicate::Method(vec!["GET".into()])));
    }

    #[test]
    fn alternatives_become_separate_parts() {
        let (p, _) =
            parts(&parse("Host(`a.com`) && Path(`/x`) || Host(`b.com`) && Header(`X`, `1`)").unwrap(), false).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].path, PathMatch::Exact("/x".into()));
        assert_eq!(p[1].hosts, ["b.com"]);
    }

    #[test]
    fn a_rule_without_host_is_refused() {
        assert!(parts(&parse("PathPrefix(`/`)").unwrap(), false).is_err());
        assert!(parts(&parse("Host(`a.com`) || Path(`/x`)").unwrap(), false).is_err());
        assert!(parts(&parse("Host(`*`)").unwrap(), false).is_err());
    }

    #[test]
    fn not_and_clientip_are_predicates() {
        let p = one("Host(`a.com`) && !ClientIP(`10.0.0.0/8`)");
        assert_eq!(
            p.predicate,
            Some(Predicate::Not(Box::new(Predicate::ClientIp { net: "10.0.0.0".parse().unwrap(), prefix_len: 8 })))
        );
    }

    #[test]
    fn host_regexp_one_label_becomes_wildcard() {
        assert_eq!(one(r"HostRegexp(`^[a-z0-9-]+\.example\.com$`)").hosts, ["*.example.com"]);
        assert_eq!(one("HostRegexp(`{sub:[a-z]+}.example.com`)").hosts, ["*.example.com"]);
        assert!(parts(&parse("HostRegexp(`^(foo|bar)\\.com$`)").unwrap(), false).is_err());
    }
}
