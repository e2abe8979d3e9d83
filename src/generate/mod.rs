//! A deterministic generator of realistic Kubernetes audit logs.
//!
//! Background traffic looks like a production cluster's: dominated by watch/list/get/update from
//! kubelets, controllers and service accounts, with a few people using kubectl. With
//! `scenarios`, attacks are woven in at fixed points of the timeline (see `scenarios.rs` and
//! `samples/README.md`). The same options always produce the same bytes.

mod actors;
mod operators;
mod scenarios;

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

/// Generator options.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Background events (scenario events come on top).
    pub events: u64,
    pub seed: u64,
    /// Event time of the first event, µs since the epoch.
    pub start_micros: i64,
    /// Background requests per second of event time (each request is 1–3 events).
    pub requests_per_second: f64,
    pub scenarios: bool,
    /// Mix in benign GitOps/operator behaviour that trips naive rules (see `operators.rs`).
    pub controllers: bool,
}

/// What was generated.
#[derive(Debug, Default)]
pub struct GenSummary {
    pub events: u64,
    pub bytes: u64,
    pub scenario_events: u64,
    pub first_micros: i64,
    pub last_micros: i64,
}

/// splitmix64: tiny, fast and good enough to make traffic look random, fully deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }

    /// A random UUID v4 string (what `auditID` and object uids look like).
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            8 + (b >> 62),
            (b >> 48) & 0xfff,
            b & 0xffff_ffff_ffff
        )
    }

    /// Pod-name style suffix (`7d9f8c6b5-x2kq9`).
    pub fn pod_suffix(&mut self) -> String {
        const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut s = String::with_capacity(16);
        for i in 0..15 {
            if i == 9 {
                s.push('-');
                continue;
            }
            s.push(CHARS[self.below(CHARS.len() as u64) as usize] as char);
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        }
    }
}

/// Which stages a request is logged at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stages {
    /// RequestReceived + ResponseComplete (most requests).
    Normal,
    /// RequestReceived + ResponseStarted (+ ResponseComplete when the stream ends): watch,
    /// exec/attach/port-forward.
    Streaming,
}

/// A user as the audit event records it.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl User {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        User {
            username: name.to_owned(),
            uid: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra: None,
        }
    }

    pub fn with_uid(mut self, uid: &str) -> Self {
        self.uid = Some(uid.to_owned());
        self
    }

    /// A service account user: `system:serviceaccount:<ns>:<name>` with its standard groups.
    pub fn service_account(ns: &str, name: &str) -> Self {
        User::new(
            &format!("system:serviceaccount:{ns}:{name}"),
            &[
                "system:serviceaccounts",
                &format!("system:serviceaccounts:{ns}"),
                "system:authenticated",
            ],
        )
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    pub api_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
}

/// One API request, to be written as its stage events.
#[derive(Debug, Clone)]
pub struct Request {
    pub verb: &'static str,
    pub uri: String,
    pub user: User,
    pub impersonated: Option<User>,
    pub source_ip: String,
    pub user_agent: String,
    pub object: Option<ObjectRef>,
    pub code: i32,
    pub level: Level,
    pub request_object: Option<Value>,
    pub response_object: Option<Value>,
    pub stages: Stages,
    /// Authorization reason when allowed (the RBAC binding, or empty for system:masters).
    pub authz_reason: String,
    /// Extra annotations (pod security, deprecation, …).
    pub annotations: Vec<(&'static str, String)>,
    /// Server latency in µs.
    pub latency_micros: i64,
}

impl Request {
    pub fn new(
        verb: &'static str,
        uri: impl Into<String>,
        user: &User,
        source_ip: &str,
        user_agent: &str,
    ) -> Self {
        Request {
            verb,
            uri: uri.into(),
            user: user.clone(),
            impersonated: None,
            source_ip: source_ip.to_owned(),
            user_agent: user_agent.to_owned(),
            object: None,
            code: 200,
            level: Level::Metadata,
            request_object: None,
            response_object: None,
            stages: Stages::Normal,
            authz_reason: String::new(),
            annotations: Vec::new(),
            latency_micros: 1_800,
        }
    }

    pub fn object(mut self, resource: &str, namespace: Option<&str>, name: Option<&str>) -> Self {
        let (group, version) = api_group_version(resource);
        self.object = Some(ObjectRef {
            resource: resource.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            api_group: group.map(str::to_owned),
            api_version: version.to_owned(),
            ..ObjectRef::default()
        });
        self
    }

    pub fn subresource(mut self, sub: &str) -> Self {
        if let Some(o) = &mut self.object {
            o.subresource = Some(sub.to_owned());
        }
        self
    }

    pub fn code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }

    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    pub fn bodies(mut self, request: Option<Value>, response: Option<Value>) -> Self {
        self.request_object = request;
        self.response_object = response;
        self
    }

    pub fn streaming(mut self) -> Self {
        self.stages = Stages::Streaming;
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.authz_reason = reason.into();
        self
    }

    pub fn impersonate(mut self, user: User) -> Self {
        self.impersonated = Some(user);
        self
    }

    pub fn latency(mut self, micros: i64) -> Self {
        self.latency_micros = micros;
        self
    }

    pub fn annotate(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.annotations.push((key, value.into()));
        self
    }
}

/// API group and version of a resource (plural), as the API server reports them in objectRef.
pub fn api_group_version(resource: &str) -> (Option<&'static str>, &'static str) {
    match resource {
        "deployments" | "replicasets" | "daemonsets" | "statefulsets" | "controllerrevisions" => {
            (Some("apps"), "v1")
        }
        "jobs" | "cronjobs" => (Some("batch"), "v1"),
        "leases" => (Some("coordination.k8s.io"), "v1"),
        "endpointslices" => (Some("discovery.k8s.io"), "v1"),
        "roles" | "rolebindings" | "clusterroles" | "clusterrolebindings" => {
            (Some("rbac.authorization.k8s.io"), "v1")
        }
        "ingresses" | "networkpolicies" => (Some("networking.k8s.io"), "v1"),
        "mutatingwebhookconfigurations" | "validatingwebhookconfigurations" => {
            (Some("admissionregistration.k8s.io"), "v1")
        }
        "certificatesigningrequests" => (Some("certificates.k8s.io"), "v1"),
        "selfsubjectaccessreviews" | "selfsubjectrulesreviews" | "subjectaccessreviews" => {
            (Some("authorization.k8s.io"), "v1")
        }
        "tokenreviews" => (Some("authentication.k8s.io"), "v1"),
        "horizontalpodautoscalers" => (Some("autoscaling"), "v2"),
        "poddisruptionbudgets" => (Some("policy"), "v1"),
        "customresourcedefinitions" => (Some("apiextensions.k8s.io"), "v1"),
        "applications" => (Some("argoproj.io"), "v1alpha1"),
        "flowschemas" => (Some("flowcontrol.apiserver.k8s.io"), "v1beta3"),
        _ => (None, "v1"),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutEvent<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: &'a User,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<&'a User>,
    #[serde(rename = "sourceIPs")]
    source_ips: [&'a str; 1],
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<&'a ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_object: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<&'a Value>,
    request_received_timestamp: String,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<serde_json::Map<String, Value>>,
}

/// Formats µs since the epoch the way the API server does: six fractional digits and `Z`.
pub fn k8s_time(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Writes requests as audit events.
pub struct EventWriter<'w> {
    out: &'w mut dyn Write,
    pub summary: GenSummary,
    line: Vec<u8>,
}

impl<'w> EventWriter<'w> {
    pub fn new(out: &'w mut dyn Write) -> Self {
        EventWriter {
            out,
            summary: GenSummary {
                first_micros: i64::MAX,
                ..GenSummary::default()
            },
            line: Vec::with_capacity(8192),
        }
    }

    /// Writes the stage events of `req`, received at `t` (µs). Returns the number of events.
    pub fn emit(&mut self, rng: &mut Rng, req: &Request, t: i64) -> io::Result<u64> {
        let audit_id = rng.uuid();
        let denied = req.code == 403;
        let status = response_status(req);
        let mut annotations = serde_json::Map::new();
        if req.code != 401 {
            annotations.insert(
                "authorization.k8s.io/decision".into(),
                (if denied { "forbid" } else { "allow" }).into(),
            );
            annotations.insert(
                "authorization.k8s.io/reason".into(),
                (if denied {
                    ""
                } else {
                    req.authz_reason.as_str()
                })
                .into(),
            );
        }
        for (k, v) in &req.annotations {
            annotations.insert((*k).into(), v.clone().into());
        }
        let received = k8s_time(t);
        let base =
            |stage: &'static str, at: i64, status: Option<Value>, final_stage: bool| OutEvent {
                kind: "Event",
                api_version: "audit.k8s.io/v1",
                level: req.level.as_str(),
                audit_id: &audit_id,
                stage,
                request_uri: &req.uri,
                verb: req.verb,
                user: &req.user,
                impersonated_user: req.impersonated.as_ref(),
                source_ips: [&req.source_ip],
                user_agent: &req.user_agent,
                object_ref: req.object.as_ref(),
                response_status: status,
                // The body is read after RequestReceived is logged: it appears from the next stage on.
                request_object: if stage != "RequestReceived" && req.level != Level::Metadata {
                    req.request_object.as_ref()
                } else {
                    None
                },
                response_object: if final_stage && req.level == Level::RequestResponse {
                    req.response_object.as_ref()
                } else {
                    None
                },
                request_received_timestamp: received.clone(),
                stage_timestamp: k8s_time(at),
                annotations: if stage == "RequestReceived" || annotations.is_empty() {
                    None
                } else {
                    Some(annotations.clone())
                },
            };
        let mut n = 0;
        self.write(&base("RequestReceived", t, None, false), t)?;
        n += 1;
        match req.stages {
            Stages::Normal => {
                self.write(
                    &base(
                        "ResponseComplete",
                        t + req.latency_micros,
                        Some(status),
                        true,
                    ),
                    t + req.latency_micros,
                )?;
                n += 1;
            }
            Stages::Streaming => {
                let started = t + req.latency_micros;
                self.write(
                    &base("ResponseStarted", started, Some(status.clone()), false),
                    started,
                )?;
                n += 1;
                // Denied streams end at once; granted ones are logged again when they close.
                if req.code >= 300 || req.verb != "watch" {
                    let end = started
                        + if req.code >= 300 {
                            400
                        } else {
                            2_000_000 + rng.below(30_000_000) as i64
                        };
                    self.write(&base("ResponseComplete", end, Some(status), true), end)?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    fn write(&mut self, ev: &OutEvent, at: i64) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, ev)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.summary.events += 1;
        self.summary.bytes += self.line.len() as u64;
        self.summary.first_micros = self.summary.first_micros.min(at);
        self.summary.last_micros = self.summary.last_micros.max(at);
        Ok(())
    }
}

fn response_status(req: &Request) -> Value {
    let obj = req.object.as_ref();
    let resource = obj.map_or("", |o| o.resource.as_str());
    let name = obj.and_then(|o| o.name.as_deref()).unwrap_or("");
    let who = req
        .impersonated
        .as_ref()
        .unwrap_or(&req.user)
        .username
        .clone();
    match req.code {
        200..=299 => serde_json::json!({"metadata": {}, "code": req.code}),
        401 => {
            serde_json::json!({"metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        }
        403 => {
            let scope = match obj.and_then(|o| o.namespace.as_deref()) {
                Some(ns) => format!(" in the namespace \"{ns}\""),
                None => " at the cluster scope".to_owned(),
            };
            let message = if resource.is_empty() {
                format!(
                    "forbidden: User \"{who}\" cannot {} path \"{}\"",
                    req.verb,
                    req.uri.split('?').next().unwrap_or("")
                )
            } else {
                let quoted = if name.is_empty() {
                    String::new()
                } else {
                    format!(" \"{name}\"")
                };
                format!(
                    "{resource}{quoted} is forbidden: User \"{who}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}",
                    req.verb,
                    obj.and_then(|o| o.api_group.as_deref()).unwrap_or("")
                )
            };
            serde_json::json!({"metadata": {}, "status": "Failure", "message": message, "reason": "Forbidden",
                "details": {"name": name, "kind": resource}, "code": 403})
        }
        404 => {
            serde_json::json!({"metadata": {}, "status": "Failure", "message": format!("{resource} \"{name}\" not found"),
            "reason": "NotFound", "details": {"name": name, "kind": resource}, "code": 404})
        }
        409 => {
            serde_json::json!({"metadata": {}, "status": "Failure", "message": format!("Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
            "reason": "Conflict", "details": {"name": name, "kind": resource}, "code": 409})
        }
        code => serde_json::json!({"metadata": {}, "status": "Failure", "code": code}),
    }
}

/// Share of background requests that come from `operators.rs` with `controllers`.
const CONTROLLER_SHARE: f64 = 0.02;

/// Generates the log into `out`.
pub fn generate(opts: &GenOptions, out: &mut dyn Write) -> io::Result<GenSummary> {
    let mut rng = Rng::new(opts.seed);
    let cluster = actors::Cluster::new(&mut rng);
    let mut w = EventWriter::new(out);
    let step = (1_000_000.0 / opts.requests_per_second.max(0.001)) as i64;
    let mut t = opts.start_micros;
    let mut plan = if opts.scenarios {
        scenarios::plan()
    } else {
        Vec::new()
    };
    plan.reverse();
    let mut background = 0u64;
    while background < opts.events {
        let progress = background as f64 / opts.events.max(1) as f64;
        while plan.last().is_some_and(|s| s.at_fraction <= progress) {
            let scenario = plan.pop().expect("checked");
            let before = w.summary.events;
            (scenario.run)(&mut scenarios::Ctx {
                rng: &mut rng,
                cluster: &cluster,
                w: &mut w,
                t: &mut t,
            })?;
            w.summary.scenario_events += w.summary.events - before;
        }
        // The draw happens only with `controllers`, so the default output stays byte-identical.
        let req = if opts.controllers && rng.chance(CONTROLLER_SHARE) {
            operators::operator_request(&mut rng, &cluster)
        } else {
            actors::background_request(&mut rng, &cluster)
        };
        background += w.emit(&mut rng, &req, t)?;
        // Jittered inter-arrival around the mean rate.
        t += step / 2 + rng.below(step.max(1) as u64) as i64;
    }
    while let Some(scenario) = plan.pop() {
        let before = w.summary.events;
        (scenario.run)(&mut scenarios::Ctx {
            rng: &mut rng,
            cluster: &cluster,
            w: &mut w,
            t: &mut t,
        })?;
        w.summary.scenario_events += w.summary.events - before;
    }
    w.out.flush()?;
    Ok(w.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen_bytes(events: u64, scenarios: bool) -> Vec<u8> {
        let opts = GenOptions {
            events,
            seed: 7,
            start_micros: 1_795_161_600_000_000,
            requests_per_second: 50.0,
            scenarios,
            controllers: false,
        };
        let mut out = Vec::new();
        generate(&opts, &mut out).unwrap();
        out
    }

    #[test]
    fn controllers_add_operator_traffic_and_leave_the_default_alone() {
        let plain = gen_bytes(5000, false);
        let opts = GenOptions {
            events: 5000,
            seed: 7,
            start_micros: 1_795_161_600_000_000,
            requests_per_second: 50.0,
            scenarios: false,
            controllers: true,
        };
        let mut mixed = Vec::new();
        generate(&opts, &mut mixed).unwrap();
        let text = std::str::from_utf8(&mixed).unwrap();
        for who in [
            "system:serviceaccount:flux-system:kustomize-controller",
            "system:serviceaccount:external-secrets:external-secrets",
            "system:serviceaccount:velero:velero",
        ] {
            assert!(text.contains(who), "{who} is missing");
        }
        assert!(
            !std::str::from_utf8(&plain)
                .unwrap()
                .contains("kustomize-controller")
        );
        assert_eq!(
            plain,
            gen_bytes(5000, false),
            "the default output is unchanged"
        );
    }

    #[test]
    fn deterministic_and_valid_audit_events() {
        let a = gen_bytes(3000, true);
        assert_eq!(a, gen_bytes(3000, true), "same options, same bytes");
        let text = std::str::from_utf8(&a).unwrap();
        let mut users = std::collections::HashSet::new();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["kind"], "Event");
            assert!(v["auditID"].as_str().unwrap().len() == 36);
            users.insert(v["user"]["username"].as_str().unwrap().to_owned());
        }
        assert!(users.len() > 20, "a realistic mix of identities: {users:?}");
    }

    #[test]
    fn background_is_dominated_by_machine_reads_and_averages_about_1_2_kb() {
        let out = gen_bytes(20_000, false);
        let text = std::str::from_utf8(&out).unwrap();
        let (mut n, mut reads, mut system) = (0usize, 0usize, 0usize);
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            n += 1;
            if matches!(
                v["verb"].as_str(),
                Some("get" | "list" | "watch" | "update" | "patch")
            ) {
                reads += 1;
            }
            if v["user"]["username"]
                .as_str()
                .unwrap()
                .starts_with("system:")
            {
                system += 1;
            }
        }
        let avg = out.len() / n;
        assert!(
            (1000..=1400).contains(&avg),
            "average event size {avg} bytes"
        );
        assert!(
            reads * 100 / n >= 75,
            "get/list/watch/update/patch share {}%",
            reads * 100 / n
        );
        assert!(
            system * 100 / n >= 80,
            "system identities share {}%",
            system * 100 / n
        );
    }
}
