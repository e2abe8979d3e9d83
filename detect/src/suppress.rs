//! Suppressions (`[[detect.suppressions]]`): findings of one rule that an operator has judged
//! benign — by actor, target, namespace and/or source address — with the reason and, usually,
//! an expiry. An expired suppression stops applying (it is reported once, so it can be
//! renewed or removed) rather than silencing a rule forever.

use auditlake_query::udf::CidrSet;

use chrono::{DateTime, NaiveDate, Utc};

use crate::error::DetectError;
use crate::finding::Finding;
use crate::rule::Rule;

/// A `*`/`?` wildcard pattern (`*` any run of characters, `?` one), case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(p: impl Into<String>) -> Pattern {
        Pattern(p.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, text: &str) -> bool {
        let (p, t): (Vec<char>, Vec<char>) = (self.0.chars().collect(), text.chars().collect());
        // Iterative wildcard match with one backtrack point: linear in practice, no recursion.
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

/// One suppression as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    /// Its config key (`detect.suppressions[2]`), named in every message about it.
    pub key: String,
    pub rule: String,
    pub actor: Option<Pattern>,
    pub target: Option<Pattern>,
    pub namespace: Option<Pattern>,
    /// CIDRs or addresses; the finding's source address must be in one of them.
    pub source_cidrs: Vec<String>,
    /// `source_cidrs`, parsed.
    source_nets: CidrSet,
    pub reason: String,
    pub expires: Option<DateTime<Utc>>,
}

/// The fields of a `[[detect.suppressions]]` entry, before they are checked.
#[derive(Debug, Clone, Default)]
pub struct SuppressionSpec {
    pub rule: String,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub namespace: Option<String>,
    pub source_cidrs: Vec<String>,
    pub reason: String,
    pub expires: Option<String>,
}

/// `2026-12-31` (the start of that day, UTC) or an RFC 3339 time.
fn parse_expiry(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

impl Suppression {
    /// Checks `spec` (config entry `key`): a rule of the pack, at least one matcher, valid
    /// CIDRs, a reason, a parseable expiry. Errors name the offending key.
    pub fn new(
        key: &str,
        spec: SuppressionSpec,
        rules: &[Rule],
    ) -> Result<Suppression, DetectError> {
        let err = |field: &str, message: String| DetectError::Config {
            key: format!("{key}.{field}"),
            message,
        };
        if !rules.iter().any(|r| r.id == spec.rule) {
            return Err(err("rule", format!("no rule with id {:?}", spec.rule)));
        }
        if spec.actor.is_none()
            && spec.target.is_none()
            && spec.namespace.is_none()
            && spec.source_cidrs.is_empty()
        {
            return Err(DetectError::Config {
                key: key.to_owned(),
                message: format!(
                    "give at least one of actor, target, namespace, source_cidr (to silence the whole rule, set detect.rules.{}.enabled = false)",
                    spec.rule
                ),
            });
        }
        for (field, p) in [
            ("actor", &spec.actor),
            ("target", &spec.target),
            ("namespace", &spec.namespace),
        ] {
            if p.as_deref()
                .is_some_and(|p| p.is_empty() || p.chars().all(|c| c == '*'))
            {
                return Err(err(
                    field,
                    "a pattern that matches everything suppresses nothing specific: name what is benign".into(),
                ));
            }
        }
        let source_nets = CidrSet::parse(spec.source_cidrs.iter().map(String::as_str))
            .map_err(|e| err("source_cidr", e.to_string()))?;
        if spec.reason.trim().is_empty() {
            return Err(err("reason", "say why these findings are benign".into()));
        }
        let expires = spec
            .expires
            .as_deref()
            .map(|e| {
                parse_expiry(e).ok_or_else(|| {
                    err(
                        "expires",
                        format!("{e:?} is not a date (2026-12-31) or an RFC 3339 time"),
                    )
                })
            })
            .transpose()?;
        Ok(Suppression {
            key: key.to_owned(),
            rule: spec.rule,
            actor: spec.actor.map(Pattern::new),
            target: spec.target.map(Pattern::new),
            namespace: spec.namespace.map(Pattern::new),
            source_cidrs: spec.source_cidrs,
            source_nets,
            reason: spec.reason,
            expires,
        })
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    /// Whether `f` is one of the findings this suppression describes (expiry aside). Every
    /// matcher given must match; a finding without the field (no target, no namespace) never
    /// matches a pattern for it.
    pub fn matches(&self, f: &Finding) -> bool {
        let field = |p: &Option<Pattern>, v: &Option<String>| match p {
            None => true,
            Some(p) => v.as_deref().is_some_and(|v| p.matches(v)),
        };
        f.rule_id == self.rule
            && field(&self.actor, &f.actor)
            && field(&self.target, &f.target)
            && field(&self.namespace, &f.namespace)
            && (self.source_cidrs.is_empty()
                || f.source_ip
                    .as_deref()
                    .is_some_and(|ip| self.source_nets.contains_str(ip)))
    }

    /// `actor=… target=… namespace=… source_cidr=…`: what it matches, for listings.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, p) in [
            ("actor", &self.actor),
            ("target", &self.target),
            ("namespace", &self.namespace),
        ] {
            if let Some(p) = p {
                parts.push(format!("{name}={:?}", p.as_str()));
            }
        }
        if !self.source_cidrs.is_empty() {
            parts.push(format!("source_cidr={}", self.source_cidrs.join(",")));
        }
        parts.join(" ")
    }
}

/// What [`Suppressions::apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    pub kept: Vec<Finding>,
    /// Findings left out, with the index of the suppression that matched.
    pub suppressed: Vec<(usize, Finding)>,
    /// Suppressions found expired for the first time by this set (warn about these once).
    pub newly_expired: Vec<usize>,
}

/// The configured suppressions of a pack.
#[derive(Debug, Clone, Default)]
pub struct Suppressions {
    pub list: Vec<Suppression>,
    warned: Vec<bool>,
}

impl Suppressions {
    pub fn new(list: Vec<Suppression>) -> Suppressions {
        let warned = vec![false; list.len()];
        Suppressions { list, warned }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Suppressions expired at `now` not reported before; marks them reported.
    pub fn take_newly_expired(&mut self, now: DateTime<Utc>) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, s) in self.list.iter().enumerate() {
            if s.is_expired(now) && !self.warned[i] {
                self.warned[i] = true;
                out.push(i);
            }
        }
        out
    }

    /// Leaves out the findings an unexpired suppression matches.
    pub fn apply(&mut self, findings: Vec<Finding>, now: DateTime<Utc>) -> Applied {
        let mut applied = Applied {
            newly_expired: self.take_newly_expired(now),
            ..Applied::default()
        };
        for f in findings {
            match self
                .list
                .iter()
                .position(|s| !s.is_expired(now) && s.matches(&f))
            {
                Some(i) => applied.suppressed.push((i, f)),
                None => applied.kept.push(f),
            }
        }
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let p = Pattern::new("system:serviceaccount:argocd:*");
        assert!(p.matches("system:serviceaccount:argocd:argocd-application-controller"));
        assert!(!p.matches("system:serviceaccount:argo:x"));
        assert!(Pattern::new("deployments web/*").matches("deployments web/frontend"));
        assert!(Pattern::new("a?c*").matches("abc"));
        assert!(Pattern::new("*-ci-*").matches("build-ci-runner"));
        assert!(!Pattern::new("*-ci-*").matches("build-ci"));
        assert!(Pattern::new("exact").matches("exact"));
        assert!(!Pattern::new("exact").matches("exact2"));
    }

    fn finding() -> Finding {
        let t = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .to_utc();
        Finding {
            finding_id: "f".into(),
            dedup_key: "k".into(),
            rule_id: "deployment-patched".into(),
            rule_version: 1,
            severity: "medium".into(),
            title: "t".into(),
            summary: "s".into(),
            cluster: "c".into(),
            actor: Some("system:serviceaccount:ci:deployer".into()),
            source_ip: Some("10.1.2.3".into()),
            target: Some("deployments web/frontend".into()),
            namespace: Some("web".into()),
            first_event_at: t,
            last_event_at: t,
            event_count: 3,
            evidence_audit_ids: vec![],
            attack_ids: vec![],
            catalog_ids: vec![],
            bucket_start: t,
            detected_at: t,
            revision: 1,
            origin: "detect".into(),
            incident_id: None,
        }
    }

    fn spec() -> SuppressionSpec {
        SuppressionSpec {
            rule: "deployment-patched".into(),
            actor: Some("system:serviceaccount:ci:*".into()),
            reason: "the CI deployer rolls out releases".into(),
            ..SuppressionSpec::default()
        }
    }

    fn rules() -> Vec<Rule> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        vec![Rule::load(&dir.join("deployment-patched")).unwrap()]
    }
    use std::path::Path;

    #[test]
    fn every_matcher_must_match_and_absent_fields_never_do() {
        let rules = rules();
        let s = |f: &dyn Fn(&mut SuppressionSpec)| {
            let mut sp = spec();
            f(&mut sp);
            Suppression::new("detect.suppressions[0]", sp, &rules).unwrap()
        };
        let f = finding();
        assert!(s(&|_| {}).matches(&f));
        assert!(s(&|sp| sp.namespace = Some("web".into())).matches(&f));
        assert!(!s(&|sp| sp.namespace = Some("prod".into())).matches(&f));
        assert!(s(&|sp| sp.source_cidrs = vec!["10.0.0.0/8".into()]).matches(&f));
        assert!(!s(&|sp| sp.source_cidrs = vec!["192.168.0.0/16".into()]).matches(&f));
        assert!(s(&|sp| sp.target = Some("deployments web/*".into())).matches(&f));
        let mut no_ns = finding();
        no_ns.namespace = None;
        assert!(!s(&|sp| sp.namespace = Some("web*".into())).matches(&no_ns));
        let mut other_rule = finding();
        other_rule.rule_id = "exec-into-pod".into();
        assert!(!s(&|_| {}).matches(&other_rule));
    }

    #[test]
    fn expired_ones_stop_applying_and_are_reported_once() {
        let rules = rules();
        let mut sp = spec();
        sp.expires = Some("2026-11-21".into());
        let mut set = Suppressions::new(vec![
            Suppression::new("detect.suppressions[0]", sp, &rules).unwrap(),
        ]);
        let before = DateTime::parse_from_rfc3339("2026-11-20T23:59:59Z")
            .unwrap()
            .to_utc();
        let a = set.apply(vec![finding()], before);
        assert_eq!((a.kept.len(), a.suppressed.len()), (0, 1));
        assert!(a.newly_expired.is_empty());
        let after = before + chrono::TimeDelta::seconds(1);
        let a = set.apply(vec![finding()], after);
        assert_eq!((a.kept.len(), a.suppressed.len()), (1, 0));
        assert_eq!(a.newly_expired, vec![0]);
        assert!(set.apply(vec![finding()], after).newly_expired.is_empty());
    }

    #[test]
    fn bad_entries_name_their_key() {
        let rules = rules();
        let err = |f: &dyn Fn(&mut SuppressionSpec)| {
            let mut sp = spec();
            f(&mut sp);
            Suppression::new("detect.suppressions[3]", sp, &rules)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&|sp| sp.rule = "nope".into()),
            "config `detect.suppressions[3].rule`: no rule with id \"nope\""
        );
        assert!(
            err(&|sp| sp.source_cidrs = vec!["10.0.0.0/33".into()])
                .starts_with("config `detect.suppressions[3].source_cidr`: \"10.0.0.0/33\"")
        );
        assert!(
            err(&|sp| sp.expires = Some("next week".into()))
                .starts_with("config `detect.suppressions[3].expires`")
        );
        assert!(
            err(&|sp| sp.reason = " ".into()).starts_with("config `detect.suppressions[3].reason`")
        );
        assert!(
            err(&|sp| sp.actor = Some("*".into()))
                .starts_with("config `detect.suppressions[3].actor`")
        );
        assert!(
            err(&|sp| sp.actor = None)
                .starts_with("config `detect.suppressions[3]`: give at least one")
        );
    }
}
