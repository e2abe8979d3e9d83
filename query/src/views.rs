//! Views for the questions an incident responder and an auditor ask first. They are plain SQL
//! over `audit_events`, registered by [`crate::open_lake`] so every entry point (CLI, shell,
//! reports, the PostgreSQL endpoint) has them.
//!
//! Each view has one row per *completed request*: the `ResponseComplete` (or `Panic`) stage of
//! an audit id. Earlier stages of the same request (`RequestReceived`, `ResponseStarted`) would
//! count it two or three times; a request still in flight (a long watch) has no completed stage
//! yet and is not in the views (it is in `audit_events`).

use datafusion::prelude::SessionContext;

use crate::QueryError;

/// `(name, what it answers, SQL)`: the description is shown by the shell's `\d`.
pub const VIEWS: &[(&str, &str, &str)] = &[
    (
        "requests",
        "one row per completed request (stage ResponseComplete or Panic)",
        "SELECT * FROM audit_events WHERE stage IN ('ResponseComplete', 'Panic')",
    ),
    (
        "secret_access",
        "get/list/watch of secrets: who, from where, which secret, allowed or denied",
        "SELECT stage_at, cluster, user_name, impersonated_user_name, user_groups, source_ip, user_agent, \
                verb, namespace, name, response_code, response_code < 400 AS allowed, authz_reason, audit_id \
         FROM audit_events \
         WHERE stage IN ('ResponseComplete', 'Panic') AND resource = 'secrets' AND subresource IS NULL \
           AND verb IN ('get', 'list', 'watch')",
    ),
    (
        "exec_sessions",
        "exec, attach and port-forward into pods, with the command and container",
        "SELECT stage_at, cluster, user_name, impersonated_user_name, source_ip, user_agent, \
                subresource AS kind, namespace, name AS pod, exec_container AS container, \
                exec_command AS command, response_code, audit_id \
         FROM audit_events \
         WHERE stage IN ('ResponseComplete', 'Panic') AND resource = 'pods' \
           AND subresource IN ('exec', 'attach', 'portforward')",
    ),
    (
        "rbac_changes",
        "create/update/patch/delete of roles, cluster roles and their bindings",
        "SELECT stage_at, cluster, user_name, impersonated_user_name, source_ip, user_agent, verb, \
                resource, namespace, name, role_ref_kind, role_ref_name, binding_subjects, \
                role_verbs, role_resources, response_code, request_object, response_object, audit_id \
         FROM audit_events \
         WHERE stage IN ('ResponseComplete', 'Panic') AND api_group = 'rbac.authorization.k8s.io' \
           AND resource IN ('roles', 'clusterroles', 'rolebindings', 'clusterrolebindings') \
           AND verb IN ('create', 'update', 'patch', 'delete', 'deletecollection')",
    ),
    (
        "failed_requests",
        "requests answered with an HTTP status of 400 or more, with the reason",
        "SELECT stage_at, cluster, user_name, impersonated_user_name, source_ip, user_agent, verb, \
                resource, subresource, namespace, name, request_uri, response_code, response_reason, \
                response_message, authz_decision, audit_id \
         FROM audit_events \
         WHERE stage IN ('ResponseComplete', 'Panic') AND response_code >= 400",
    ),
];

pub(crate) async fn register_views(ctx: &SessionContext) -> Result<(), QueryError> {
    for (name, _, sql) in VIEWS {
        crate::register_view(ctx, name, sql).await?;
    }
    Ok(())
}
