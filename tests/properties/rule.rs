//! The Traefik rule language (a router's `rule` label), fed arbitrary strings, rule-shaped junk
//! and nesting far past any sane depth. The parser is internal, so it is driven the way a
//! deploy drives it: through a router label.

use proptest::prelude::*;
use proptest::sample::select;
use swarmgate::labels::{translate, LabelsConfig, ServiceInput, Translation};

fn with_rule(rule: &str) -> Translation {
    let svc = ServiceInput {
        id: "id-r".into(),
        name: "r".into(),
        labels: [
            ("traefik.enable", "true"),
            ("traefik.http.routers.r.rule", rule),
            ("traefik.http.services.r.loadbalancer.server.port", "80"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ports: vec![],
    };
    translate(&[svc], &LabelsConfig::default())
}

/// A refused rule is a problem on the rule label, and no route is left half-made.
fn refused_or_routed(rule: &str) -> Result<(), TestCaseError> {
    let t = with_rule(rule);
    let on_rule = t.problems.iter().any(|p| p.key.eq_ignore_ascii_case("traefik.http.routers.r.rule"));
    prop_assert!(on_rule || !t.routes.is_empty(), "rule {rule:?} neither routed nor reported: {:#?}", t.problems);
    for r in &t.routes {
        prop_assert!(!r.hosts.is_empty(), "every route from a rule has a host");
    }
    Ok(())
}

fn rule_token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec![
            "Host", "host", "HostRegexp", "Path", "PathPrefix", "PathRegexp", "Header", "HeaderRegexp", "Method",
            "Query", "QueryRegexp", "ClientIP", "HostHeader", "Unknown", "(", ")", "(", ")", ",", "&&", "||", "!",
            "&", "|", " ", "`a.test`", "`/p`", "`x`", "``", "\"a.test\"", "\"\\\"\"", "`", "\"", "'a'",
            "`^(a+)+$`", "`[`", "`10.0.0.0/8`", "`::1/129`", "`GET`", "`{a:[0-9]+}`", "`\u{e9}.test`",
        ]).prop_map(str::to_owned),
        1 => "\\PC{0,6}",
    ]
}

proptest! {
    #![proptest_config(crate::cases(2000))]

    #[test]
    fn any_string_is_a_rule_or_a_problem(rule in any::<String>()) {
        refused_or_routed(&rule)?;
    }

    #[test]
    fn rule_shaped_junk_is_a_rule_or_a_problem(tokens in prop::collection::vec(rule_token(), 0..40)) {
        refused_or_routed(&tokens.concat())?;
    }
}

proptest! {
    #![proptest_config(crate::cases(16))]

    /// Parentheses and negations nested far deeper than the parser allows: a problem, never a
    /// stack overflow (which would abort the process).
    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow(depth in 65usize..200_000, shape in 0u8..4) {
        let rule = match shape {
            0 => "(".repeat(depth),
            1 => format!("{}Host(`a.test`){}", "(".repeat(depth), ")".repeat(depth)),
            2 => format!("{}Host(`a.test`)", "!".repeat(depth)),
            _ => format!("{}Host(`a.test`)", "!(".repeat(depth)),
        };
        let t = with_rule(&rule);
        prop_assert!(t.routes.is_empty());
        prop_assert!(t.problems.iter().any(|p| p.key == "traefik.http.routers.r.rule"));
    }
}

#[test]
fn a_hundred_thousand_open_parentheses_are_a_problem() {
    let t = with_rule(&"(".repeat(100_000));
    assert!(t.routes.is_empty());
    assert!(t.problems.iter().any(|p| p.key == "traefik.http.routers.r.rule" && p.message.contains("nested")));
}

#[test]
fn a_rule_at_the_nesting_limit_still_routes() {
    let t = with_rule(&format!("{}Host(`a.test`){}", "(".repeat(60), ")".repeat(60)));
    assert_eq!(t.routes.len(), 1, "{:#?}", t.problems);
}
