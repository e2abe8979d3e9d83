//! Arrow builders for the `audit_events` file schema, one per column, filled row by row.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, ListBuilder, MapBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use auditlake_schemas::audit_events_file_schema;

use crate::decode::raw::{PairsRef, RawEvent, Str, StrList, UserInfo};
use crate::derive::{ExecFacts, PodFacts, RbacFacts};

/// Annotation keys promoted to their own columns.
pub const AUTHZ_DECISION_ANNOTATION: &str = "authorization.k8s.io/decision";
pub const AUTHZ_REASON_ANNOTATION: &str = "authorization.k8s.io/reason";
/// Added by auditlake (not the API server) when a body could not be parsed faithfully and was
/// masked as text: which body and why.
pub const MASKED_ANNOTATION: &str = "auditlake.io/body-masked";
/// Added by auditlake when the record carried no `stage` (some exports drop it): the stage it
/// was stored under and why.
pub const STAGE_DEFAULTED_ANNOTATION: &str = "auditlake.io/stage-defaulted";

/// Values computed while decoding one event (everything that is not a plain copy of a field).
pub struct Computed<'a> {
    /// The record's stage, or the one decoding chose for a record without one.
    pub stage: &'a str,
    /// Set when `stage` was chosen by decoding: stored as [`STAGE_DEFAULTED_ANNOTATION`].
    pub stage_note: Option<&'a str>,
    pub event_api_version: &'a str,
    pub source_format: &'a str,
    pub request_received_at: Option<i64>,
    pub stage_at: i64,
    pub ingested_at: i64,
    pub request_object: Option<&'a str>,
    pub response_object: Option<&'a str>,
    pub pod: Option<PodFacts>,
    pub rbac: Option<RbacFacts>,
    pub exec: Option<ExecFacts>,
    /// Set when a body was masked as text instead of redacted by shape: stored as the event
    /// annotation [`MASKED_ANNOTATION`].
    pub masked_note: Option<&'a str>,
}

type StrListBuilder = ListBuilder<StringBuilder>;

/// Column builders in file-schema order.
pub struct EventColumns {
    audit_id: StringBuilder,
    stage: StringBuilder,
    level: StringBuilder,
    event_api_version: StringBuilder,
    source_format: StringBuilder,
    request_received_at: TimestampMicrosecondBuilder,
    stage_at: TimestampMicrosecondBuilder,
    ingested_at: TimestampMicrosecondBuilder,
    verb: StringBuilder,
    request_uri: StringBuilder,
    user_agent: StringBuilder,
    source_ips: StrListBuilder,
    source_ip: StringBuilder,
    user_name: StringBuilder,
    user_uid: StringBuilder,
    user_groups: StrListBuilder,
    user_extra: MapBuilder<StringBuilder, StrListBuilder>,
    impersonated_user_name: StringBuilder,
    impersonated_user_uid: StringBuilder,
    impersonated_user_groups: StrListBuilder,
    resource: StringBuilder,
    subresource: StringBuilder,
    namespace: StringBuilder,
    name: StringBuilder,
    api_group: StringBuilder,
    api_version: StringBuilder,
    object_uid: StringBuilder,
    object_resource_version: StringBuilder,
    response_code: Int32Builder,
    response_status: StringBuilder,
    response_reason: StringBuilder,
    response_message: StringBuilder,
    authz_decision: StringBuilder,
    authz_reason: StringBuilder,
    annotations: MapBuilder<StringBuilder, StringBuilder>,
    request_object: StringBuilder,
    response_object: StringBuilder,
    pod_privileged: BooleanBuilder,
    pod_privileged_images: StrListBuilder,
    pod_host_network: BooleanBuilder,
    pod_host_pid: BooleanBuilder,
    pod_host_ipc: BooleanBuilder,
    pod_host_paths: StrListBuilder,
    pod_added_capabilities: StrListBuilder,
    pod_images: StrListBuilder,
    pod_service_account: StringBuilder,
    role_ref_kind: StringBuilder,
    role_ref_name: StringBuilder,
    binding_subjects: StrListBuilder,
    role_verbs: StrListBuilder,
    role_resources: StrListBuilder,
    exec_command: StrListBuilder,
    exec_container: StringBuilder,
    rows: usize,
    /// Approximate bytes appended (input-sized), used to roll batches by size.
    bytes: usize,
}

fn ts() -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::new().with_timezone("UTC")
}

/// The API group (`None` for the core group) and version a resource request's URI names:
/// `/apis/<group>/<version>/…` or `/api/<version>/…`. `None` for anything else (discovery,
/// `/healthz`, a non-resource URL).
fn group_version_from_uri(uri: &str) -> Option<(Option<&str>, &str)> {
    let path = uri.split(['?', '#']).next()?;
    let mut parts = path.strip_prefix('/')?.split('/');
    let (group, version) = match parts.next()? {
        "apis" => (Some(parts.next()?), parts.next()?),
        "api" => (None, parts.next()?),
        _ => return None,
    };
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    // Only a request for a resource below the version: `/apis/apps/v1` alone is discovery.
    (parts.next().is_some_and(|p| !p.is_empty()) && valid(version) && group.is_none_or(valid))
        .then_some((group, version))
}

fn s(b: &mut StringBuilder, v: Option<&Str>) {
    b.append_option(v.map(Str::as_str));
}

fn list<'x, I: IntoIterator<Item = &'x str>>(b: &mut StrListBuilder, v: Option<I>) {
    match v {
        Some(items) => {
            for item in items {
                b.values().append_value(item);
            }
            b.append(true);
        }
        None => b.append_null(),
    }
}

fn str_list(b: &mut StrListBuilder, v: Option<&StrList>) {
    list(b, v.map(|l| l.0.iter().map(Str::as_str)));
}

fn owned_list(b: &mut StrListBuilder, v: Option<&Vec<String>>) {
    list(b, v.map(|l| l.iter().map(String::as_str)));
}

impl Default for EventColumns {
    fn default() -> Self {
        let sb = StringBuilder::new;
        let lb = || ListBuilder::new(StringBuilder::new());
        EventColumns {
            audit_id: sb(),
            stage: sb(),
            level: sb(),
            event_api_version: sb(),
            source_format: sb(),
            request_received_at: ts(),
            stage_at: ts(),
            ingested_at: ts(),
            verb: sb(),
            request_uri: sb(),
            user_agent: sb(),
            source_ips: lb(),
            source_ip: sb(),
            user_name: sb(),
            user_uid: sb(),
            user_groups: lb(),
            user_extra: MapBuilder::new(None, sb(), lb()),
            impersonated_user_name: sb(),
            impersonated_user_uid: sb(),
            impersonated_user_groups: lb(),
            resource: sb(),
            subresource: sb(),
            namespace: sb(),
            name: sb(),
            api_group: sb(),
            api_version: sb(),
            object_uid: sb(),
            object_resource_version: sb(),
            response_code: Int32Builder::new(),
            response_status: sb(),
            response_reason: sb(),
            response_message: sb(),
            authz_decision: sb(),
            authz_reason: sb(),
            annotations: MapBuilder::new(None, sb(), sb()),
            request_object: sb(),
            response_object: sb(),
            pod_privileged: BooleanBuilder::new(),
            pod_privileged_images: lb(),
            pod_host_network: BooleanBuilder::new(),
            pod_host_pid: BooleanBuilder::new(),
            pod_host_ipc: BooleanBuilder::new(),
            pod_host_paths: lb(),
            pod_added_capabilities: lb(),
            pod_images: lb(),
            pod_service_account: sb(),
            role_ref_kind: sb(),
            role_ref_name: sb(),
            binding_subjects: lb(),
            role_verbs: lb(),
            role_resources: lb(),
            exec_command: lb(),
            exec_container: sb(),
            rows: 0,
            bytes: 0,
        }
    }
}

impl EventColumns {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Appends one event. `ev.audit_id` must have been validated as present.
    pub fn append(&mut self, ev: &RawEvent, c: &Computed, input_len: usize) {
        self.rows += 1;
        self.bytes += input_len;
        s(&mut self.audit_id, ev.audit_id.as_ref());
        self.stage.append_value(c.stage);
        s(&mut self.level, ev.level.as_ref());
        self.event_api_version.append_value(c.event_api_version);
        self.source_format.append_value(c.source_format);
        self.request_received_at
            .append_option(c.request_received_at);
        self.stage_at.append_value(c.stage_at);
        self.ingested_at.append_value(c.ingested_at);
        s(&mut self.verb, ev.verb.as_ref());
        s(&mut self.request_uri, ev.request_uri.as_ref());
        s(&mut self.user_agent, ev.user_agent.as_ref());
        str_list(&mut self.source_ips, ev.source_ips.as_ref());
        s(
            &mut self.source_ip,
            ev.source_ips.as_ref().and_then(|l| l.0.first()),
        );
        self.append_user(ev.user.as_ref());
        let imp = ev.impersonated_user.as_ref();
        s(
            &mut self.impersonated_user_name,
            imp.and_then(|u| u.username.as_ref()),
        );
        s(
            &mut self.impersonated_user_uid,
            imp.and_then(|u| u.uid.as_ref()),
        );
        str_list(
            &mut self.impersonated_user_groups,
            imp.and_then(|u| u.groups.as_ref()),
        );

        let o = ev.object_ref.as_ref();
        s(&mut self.resource, o.and_then(|o| o.resource.as_ref()));
        s(
            &mut self.subresource,
            o.and_then(|o| o.subresource.as_ref()),
        );
        s(&mut self.namespace, o.and_then(|o| o.namespace.as_ref()));
        s(&mut self.name, o.and_then(|o| o.name.as_ref()));
        // Some exports drop objectRef's apiGroup/apiVersion; the request URI names both, so the
        // RBAC, batch and apps rules still see the group.
        let from_uri = o
            .and(ev.request_uri.as_ref())
            .and_then(|u| group_version_from_uri(u.as_str()));
        self.api_group.append_option(
            o.and_then(|o| o.api_group.as_ref())
                .map(Str::as_str)
                .or(from_uri.and_then(|(group, _)| group)),
        );
        self.api_version.append_option(
            o.and_then(|o| o.api_version.as_ref())
                .map(Str::as_str)
                .or(from_uri.map(|(_, version)| version)),
        );
        s(&mut self.object_uid, o.and_then(|o| o.uid.as_ref()));
        s(
            &mut self.object_resource_version,
            o.and_then(|o| o.resource_version.as_ref()),
        );

        let st = ev.response_status.as_ref();
        self.response_code.append_option(st.and_then(|s| s.code));
        s(
            &mut self.response_status,
            st.and_then(|s| s.status.as_ref()),
        );
        s(
            &mut self.response_reason,
            st.and_then(|s| s.reason.as_ref()),
        );
        s(
            &mut self.response_message,
            st.and_then(|s| s.message.as_ref()),
        );
        let ours = [
            (MASKED_ANNOTATION, c.masked_note),
            (STAGE_DEFAULTED_ANNOTATION, c.stage_note),
        ];
        self.append_annotations(ev.annotations.as_ref(), &ours);

        self.request_object.append_option(c.request_object);
        self.response_object.append_option(c.response_object);
        self.append_pod(c.pod.as_ref());
        let rbac = c.rbac.as_ref();
        self.role_ref_kind
            .append_option(rbac.and_then(|r| r.role_ref_kind.as_deref()));
        self.role_ref_name
            .append_option(rbac.and_then(|r| r.role_ref_name.as_deref()));
        owned_list(
            &mut self.binding_subjects,
            rbac.and_then(|r| r.subjects.as_ref()),
        );
        owned_list(&mut self.role_verbs, rbac.and_then(|r| r.verbs.as_ref()));
        owned_list(
            &mut self.role_resources,
            rbac.and_then(|r| r.resources.as_ref()),
        );
        let exec = c.exec.as_ref();
        owned_list(
            &mut self.exec_command,
            exec.and_then(|e| e.command.as_ref()),
        );
        self.exec_container
            .append_option(exec.and_then(|e| e.container.as_deref()));
    }

    fn append_user(&mut self, user: Option<&UserInfo>) {
        s(&mut self.user_name, user.and_then(|u| u.username.as_ref()));
        s(&mut self.user_uid, user.and_then(|u| u.uid.as_ref()));
        str_list(&mut self.user_groups, user.and_then(|u| u.groups.as_ref()));
        match user.and_then(|u| u.extra.as_ref()) {
            Some(extra) => {
                for (k, v) in &extra.0 {
                    self.user_extra.keys().append_value(k.as_str());
                    str_list(self.user_extra.values(), v.as_ref());
                }
                self.user_extra
                    .append(true)
                    .expect("keys and values appended together");
            }
            None => self.user_extra.append(false).expect("null map"),
        }
    }

    fn append_annotations(
        &mut self,
        annotations: Option<&PairsRef<Option<Str>>>,
        ours: &[(&str, Option<&str>)],
    ) {
        let mut decision = None;
        let mut reason = None;
        if annotations.is_none() && ours.iter().all(|(_, v)| v.is_none()) {
            self.annotations.append(false).expect("null map");
        } else {
            for (k, v) in annotations.iter().flat_map(|p| &p.0) {
                let v = v.as_ref().map(Str::as_str);
                match k.as_str() {
                    AUTHZ_DECISION_ANNOTATION => decision = v,
                    AUTHZ_REASON_ANNOTATION => reason = v,
                    // Ours replaces one the input carried (keys of a map are unique).
                    key if ours.iter().any(|(k, v)| *k == key && v.is_some()) => continue,
                    _ => {}
                }
                self.annotations.keys().append_value(k.as_str());
                self.annotations.values().append_option(v);
            }
            for (key, note) in ours {
                if let Some(note) = note {
                    self.annotations.keys().append_value(key);
                    self.annotations.values().append_value(note);
                }
            }
            self.annotations
                .append(true)
                .expect("keys and values appended together");
        }
        self.authz_decision.append_option(decision);
        self.authz_reason.append_option(reason);
    }

    fn append_pod(&mut self, pod: Option<&PodFacts>) {
        self.pod_privileged.append_option(pod.map(|p| p.privileged));
        owned_list(
            &mut self.pod_privileged_images,
            pod.map(|p| &p.privileged_images),
        );
        self.pod_host_network
            .append_option(pod.map(|p| p.host_network));
        self.pod_host_pid.append_option(pod.map(|p| p.host_pid));
        self.pod_host_ipc.append_option(pod.map(|p| p.host_ipc));
        owned_list(&mut self.pod_host_paths, pod.map(|p| &p.host_paths));
        owned_list(
            &mut self.pod_added_capabilities,
            pod.map(|p| &p.added_capabilities),
        );
        owned_list(&mut self.pod_images, pod.map(|p| &p.images));
        self.pod_service_account
            .append_option(pod.and_then(|p| p.service_account.as_deref()));
    }

    /// Finishes the builders into a batch of the file schema and resets them.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.audit_id.finish()),
            Arc::new(self.stage.finish()),
            Arc::new(self.level.finish()),
            Arc::new(self.event_api_version.finish()),
            Arc::new(self.source_format.finish()),
            Arc::new(self.request_received_at.finish()),
            Arc::new(self.stage_at.finish()),
            Arc::new(self.ingested_at.finish()),
            Arc::new(self.verb.finish()),
            Arc::new(self.request_uri.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.source_ips.finish()),
            Arc::new(self.source_ip.finish()),
            Arc::new(self.user_name.finish()),
            Arc::new(self.user_uid.finish()),
            Arc::new(self.user_groups.finish()),
            Arc::new(self.user_extra.finish()),
            Arc::new(self.impersonated_user_name.finish()),
            Arc::new(self.impersonated_user_uid.finish()),
            Arc::new(self.impersonated_user_groups.finish()),
            Arc::new(self.resource.finish()),
            Arc::new(self.subresource.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.api_group.finish()),
            Arc::new(self.api_version.finish()),
            Arc::new(self.object_uid.finish()),
            Arc::new(self.object_resource_version.finish()),
            Arc::new(self.response_code.finish()),
            Arc::new(self.response_status.finish()),
            Arc::new(self.response_reason.finish()),
            Arc::new(self.response_message.finish()),
            Arc::new(self.authz_decision.finish()),
            Arc::new(self.authz_reason.finish()),
            Arc::new(self.annotations.finish()),
            Arc::new(self.request_object.finish()),
            Arc::new(self.response_object.finish()),
            Arc::new(self.pod_privileged.finish()),
            Arc::new(self.pod_privileged_images.finish()),
            Arc::new(self.pod_host_network.finish()),
            Arc::new(self.pod_host_pid.finish()),
            Arc::new(self.pod_host_ipc.finish()),
            Arc::new(self.pod_host_paths.finish()),
            Arc::new(self.pod_added_capabilities.finish()),
            Arc::new(self.pod_images.finish()),
            Arc::new(self.pod_service_account.finish()),
            Arc::new(self.role_ref_kind.finish()),
            Arc::new(self.role_ref_name.finish()),
            Arc::new(self.binding_subjects.finish()),
            Arc::new(self.role_verbs.finish()),
            Arc::new(self.role_resources.finish()),
            Arc::new(self.exec_command.finish()),
            Arc::new(self.exec_container.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(audit_events_file_schema(), columns)
            .expect("EventColumns builds exactly the audit_events file schema (tested)")
    }
}

#[cfg(test)]
mod tests {
    use super::group_version_from_uri as gv;

    #[test]
    fn the_uri_names_group_and_version_of_resource_requests_only() {
        assert_eq!(
            gv("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/x"),
            Some((Some("rbac.authorization.k8s.io"), "v1"))
        );
        assert_eq!(
            gv("/apis/batch/v1/namespaces/a/cronjobs?fieldManager=kubectl"),
            Some((Some("batch"), "v1"))
        );
        assert_eq!(gv("/api/v1/namespaces/a/secrets/db"), Some((None, "v1")));
        for other in [
            "/apis/apps/v1",
            "/apis/apps/v1/",
            "/api",
            "/healthz",
            "/apis//v1/x",
            "apis/apps/v1/deployments",
            "/apis/a%20b/v1/x",
        ] {
            assert_eq!(gv(other), None, "{other}");
        }
    }
}
