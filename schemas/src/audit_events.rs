//! Columns of `audit_events`. Names are snake_case so SQL needs no quoting.

use crate::{ColumnDef, ColumnType as T};

macro_rules! names {
    ($($konst:ident = $name:literal;)*) => {
        $(#[doc = concat!("Column `", $name, "`.")] pub const $konst: &str = $name;)*
    };
}

names! {
    AUDIT_ID = "audit_id";
    STAGE = "stage";
    LEVEL = "level";
    EVENT_API_VERSION = "event_api_version";
    SOURCE_FORMAT = "source_format";
    REQUEST_RECEIVED_AT = "request_received_at";
    STAGE_AT = "stage_at";
    INGESTED_AT = "ingested_at";
    VERB = "verb";
    REQUEST_URI = "request_uri";
    USER_AGENT = "user_agent";
    SOURCE_IPS = "source_ips";
    SOURCE_IP = "source_ip";
    USER_NAME = "user_name";
    USER_UID = "user_uid";
    USER_GROUPS = "user_groups";
    USER_EXTRA = "user_extra";
    IMPERSONATED_USER_NAME = "impersonated_user_name";
    IMPERSONATED_USER_UID = "impersonated_user_uid";
    IMPERSONATED_USER_GROUPS = "impersonated_user_groups";
    RESOURCE = "resource";
    SUBRESOURCE = "subresource";
    NAMESPACE = "namespace";
    NAME = "name";
    API_GROUP = "api_group";
    API_VERSION = "api_version";
    OBJECT_UID = "object_uid";
    OBJECT_RESOURCE_VERSION = "object_resource_version";
    RESPONSE_CODE = "response_code";
    RESPONSE_STATUS = "response_status";
    RESPONSE_REASON = "response_reason";
    RESPONSE_MESSAGE = "response_message";
    AUTHZ_DECISION = "authz_decision";
    AUTHZ_REASON = "authz_reason";
    ANNOTATIONS = "annotations";
    REQUEST_OBJECT = "request_object";
    RESPONSE_OBJECT = "response_object";
    POD_PRIVILEGED = "pod_privileged";
    POD_PRIVILEGED_IMAGES = "pod_privileged_images";
    POD_HOST_NETWORK = "pod_host_network";
    POD_HOST_PID = "pod_host_pid";
    POD_HOST_IPC = "pod_host_ipc";
    POD_HOST_PATHS = "pod_host_paths";
    POD_ADDED_CAPABILITIES = "pod_added_capabilities";
    POD_IMAGES = "pod_images";
    POD_SERVICE_ACCOUNT = "pod_service_account";
    ROLE_REF_KIND = "role_ref_kind";
    ROLE_REF_NAME = "role_ref_name";
    BINDING_SUBJECTS = "binding_subjects";
    ROLE_VERBS = "role_verbs";
    ROLE_RESOURCES = "role_resources";
    EXEC_COMMAND = "exec_command";
    EXEC_CONTAINER = "exec_container";
    CLUSTER = "cluster";
    DATE = "date";
    HOUR = "hour";
}

const fn col(
    name: &'static str,
    ty: T,
    nullable: bool,
    source: &'static str,
    description: &'static str,
) -> ColumnDef {
    ColumnDef {
        name,
        ty,
        nullable,
        source,
        description,
    }
}

/// The columns stored in every `audit_events` Parquet file, in file order.
pub const AUDIT_EVENT_COLUMNS: &[ColumnDef] = &[
    // identity
    col(
        AUDIT_ID,
        T::Utf8,
        false,
        "`auditID`",
        "Unique id of the request; shared by all stages of one request.",
    ),
    col(
        STAGE,
        T::Utf8,
        false,
        "`stage`",
        "`RequestReceived`, `ResponseStarted`, `ResponseComplete` or `Panic`. A record without a stage (some exports drop it) is stored as `ResponseComplete` when it has a response status, else `RequestReceived`, with the annotation `auditlake.io/stage-defaulted` saying so.",
    ),
    col(
        LEVEL,
        T::Utf8,
        true,
        "`level`",
        "Audit level the policy chose: `None`, `Metadata`, `Request`, `RequestResponse`.",
    ),
    col(
        EVENT_API_VERSION,
        T::Utf8,
        false,
        "`apiVersion` (of the Event, else of its EventList)",
        "`audit.k8s.io/v1` or `audit.k8s.io/v1beta1`.",
    ),
    col(
        SOURCE_FORMAT,
        T::Utf8,
        false,
        "ingest: envelope the event arrived in",
        "`k8s-audit` for native Event/EventList JSON; managed-cloud envelopes name themselves (`eks-cloudwatch`, `gke-logentry`, `aks-diagnostics`).",
    ),
    // time
    col(
        REQUEST_RECEIVED_AT,
        T::TimestampUtc,
        true,
        "`requestReceivedTimestamp`",
        "When the API server received the request.",
    ),
    col(
        STAGE_AT,
        T::TimestampUtc,
        false,
        "`stageTimestamp` (else `requestReceivedTimestamp`)",
        "Event time: when this stage was reached. Picks the partition.",
    ),
    col(
        INGESTED_AT,
        T::TimestampUtc,
        false,
        "ingest: wall clock",
        "When auditlake decoded the event.",
    ),
    // request
    col(
        VERB,
        T::Utf8,
        true,
        "`verb`",
        "Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, …) or HTTP verb for non-resource URLs.",
    ),
    col(
        REQUEST_URI,
        T::Utf8,
        true,
        "`requestURI`",
        "Request URI as sent by the client, with query string.",
    ),
    col(
        USER_AGENT,
        T::Utf8,
        true,
        "`userAgent`",
        "Client user agent.",
    ),
    col(
        SOURCE_IPS,
        T::ListUtf8,
        true,
        "`sourceIPs`",
        "Client IP and intermediate proxies (X-Forwarded-For), client first.",
    ),
    col(SOURCE_IP, T::Utf8, true, "`sourceIPs[0]`", "The client IP."),
    // who
    col(
        USER_NAME,
        T::Utf8,
        true,
        "`user.username`",
        "Authenticated user name (`system:serviceaccount:<ns>:<sa>`, `system:node:<node>`, …).",
    ),
    col(
        USER_UID,
        T::Utf8,
        true,
        "`user.uid`",
        "Authenticated user uid.",
    ),
    col(
        USER_GROUPS,
        T::ListUtf8,
        true,
        "`user.groups`",
        "Groups of the authenticated user.",
    ),
    col(
        USER_EXTRA,
        T::MapUtf8ListUtf8,
        true,
        "`user.extra`",
        "Extra authenticator attributes (e.g. `authentication.kubernetes.io/pod-name`).",
    ),
    col(
        IMPERSONATED_USER_NAME,
        T::Utf8,
        true,
        "`impersonatedUser.username`",
        "User the request impersonated (`kubectl --as`).",
    ),
    col(
        IMPERSONATED_USER_UID,
        T::Utf8,
        true,
        "`impersonatedUser.uid`",
        "Uid of the impersonated user.",
    ),
    col(
        IMPERSONATED_USER_GROUPS,
        T::ListUtf8,
        true,
        "`impersonatedUser.groups`",
        "Groups impersonated (`kubectl --as-group`).",
    ),
    // what
    col(
        RESOURCE,
        T::Utf8,
        true,
        "`objectRef.resource`",
        "Resource (plural, e.g. `pods`, `secrets`, `clusterrolebindings`).",
    ),
    col(
        SUBRESOURCE,
        T::Utf8,
        true,
        "`objectRef.subresource`",
        "Subresource (`exec`, `attach`, `portforward`, `status`, `token`, `ephemeralcontainers`, …).",
    ),
    col(
        NAMESPACE,
        T::Utf8,
        true,
        "`objectRef.namespace`",
        "Namespace of the object; null for cluster-scoped requests.",
    ),
    col(
        NAME,
        T::Utf8,
        true,
        "`objectRef.name`",
        "Name of the object; null for list/watch/create-without-name.",
    ),
    col(
        API_GROUP,
        T::Utf8,
        true,
        "`objectRef.apiGroup`, else from `requestURI`",
        "API group; empty or null for the core group. When an export drops `objectRef.apiGroup`, taken from the request URI (`/apis/<group>/<version>/…`).",
    ),
    col(
        API_VERSION,
        T::Utf8,
        true,
        "`objectRef.apiVersion`, else from `requestURI`",
        "API version of the object (`v1`, `v1beta1`, …); from the request URI when the record lacks it.",
    ),
    col(
        OBJECT_UID,
        T::Utf8,
        true,
        "`objectRef.uid`",
        "Uid of the object, when known.",
    ),
    col(
        OBJECT_RESOURCE_VERSION,
        T::Utf8,
        true,
        "`objectRef.resourceVersion`",
        "Resource version of the object, when known.",
    ),
    // outcome
    col(
        RESPONSE_CODE,
        T::Int32,
        true,
        "`responseStatus.code`",
        "HTTP status code of the response; null before `ResponseComplete`.",
    ),
    col(
        RESPONSE_STATUS,
        T::Utf8,
        true,
        "`responseStatus.status`",
        "`Success` or `Failure` (set on errors).",
    ),
    col(
        RESPONSE_REASON,
        T::Utf8,
        true,
        "`responseStatus.reason`",
        "Machine-readable reason (`Forbidden`, `NotFound`, …).",
    ),
    col(
        RESPONSE_MESSAGE,
        T::Utf8,
        true,
        "`responseStatus.message`",
        "Human-readable error message.",
    ),
    col(
        AUTHZ_DECISION,
        T::Utf8,
        true,
        "`annotations[\"authorization.k8s.io/decision\"]`",
        "Authorizer decision: `allow` or `forbid`.",
    ),
    col(
        AUTHZ_REASON,
        T::Utf8,
        true,
        "`annotations[\"authorization.k8s.io/reason\"]`",
        "Why the authorizer decided (e.g. the RBAC binding that allowed it).",
    ),
    col(
        ANNOTATIONS,
        T::MapUtf8Utf8,
        true,
        "`annotations`",
        "All annotations, including the two promoted above, `pod-security.kubernetes.io/*` and `k8s.io/deprecated`.",
    ),
    // bodies
    col(
        REQUEST_OBJECT,
        T::JsonText,
        true,
        "`requestObject`",
        "Request body at level Request/RequestResponse, as JSON text. Secret `data`/`stringData` values are redacted unless redaction is turned off.",
    ),
    col(
        RESPONSE_OBJECT,
        T::JsonText,
        true,
        "`responseObject`",
        "Response body at level RequestResponse, as JSON text; secret values redacted as above.",
    ),
    // derived: pod specs (pods, ephemeral containers and pod templates of workloads)
    col(
        POD_PRIVILEGED,
        T::Boolean,
        true,
        "derived: `requestObject` pod spec",
        "Any container, init container or ephemeral container has `securityContext.privileged: true`. Null when the request carries no pod spec.",
    ),
    col(
        POD_PRIVILEGED_IMAGES,
        T::ListUtf8,
        true,
        "derived: `requestObject` pod spec",
        "Images of the privileged containers (for image allow-lists).",
    ),
    col(
        POD_HOST_NETWORK,
        T::Boolean,
        true,
        "derived: `requestObject` pod spec",
        "`spec.hostNetwork`.",
    ),
    col(
        POD_HOST_PID,
        T::Boolean,
        true,
        "derived: `requestObject` pod spec",
        "`spec.hostPID`.",
    ),
    col(
        POD_HOST_IPC,
        T::Boolean,
        true,
        "derived: `requestObject` pod spec",
        "`spec.hostIPC`.",
    ),
    col(
        POD_HOST_PATHS,
        T::ListUtf8,
        true,
        "derived: `requestObject` pod spec",
        "`spec.volumes[].hostPath.path`, in volume order.",
    ),
    col(
        POD_ADDED_CAPABILITIES,
        T::ListUtf8,
        true,
        "derived: `requestObject` pod spec",
        "Union of `securityContext.capabilities.add` over all containers, upper-case without `CAP_`.",
    ),
    col(
        POD_IMAGES,
        T::ListUtf8,
        true,
        "derived: `requestObject` pod spec",
        "Images of all containers, init containers and ephemeral containers.",
    ),
    col(
        POD_SERVICE_ACCOUNT,
        T::Utf8,
        true,
        "derived: `requestObject` pod spec",
        "`spec.serviceAccountName` (else the deprecated `spec.serviceAccount`).",
    ),
    // derived: RBAC
    col(
        ROLE_REF_KIND,
        T::Utf8,
        true,
        "derived: `requestObject.roleRef.kind`",
        "For (cluster)rolebindings: `ClusterRole` or `Role`.",
    ),
    col(
        ROLE_REF_NAME,
        T::Utf8,
        true,
        "derived: `requestObject.roleRef.name`",
        "For (cluster)rolebindings: the role granted (e.g. `cluster-admin`).",
    ),
    col(
        BINDING_SUBJECTS,
        T::ListUtf8,
        true,
        "derived: `requestObject.subjects`",
        "For (cluster)rolebindings: each subject as `User:<name>`, `Group:<name>` or `ServiceAccount:<ns>/<name>`.",
    ),
    col(
        ROLE_VERBS,
        T::ListUtf8,
        true,
        "derived: `requestObject.rules[].verbs`",
        "For (cluster)roles: union of the verbs of all rules (`*` kept as is).",
    ),
    col(
        ROLE_RESOURCES,
        T::ListUtf8,
        true,
        "derived: `requestObject.rules[].resources`",
        "For (cluster)roles: union of the resources of all rules (`pods/exec`, `*`, …).",
    ),
    // derived: exec/attach
    col(
        EXEC_COMMAND,
        T::ListUtf8,
        true,
        "derived: `requestURI` query `command=`",
        "For pods/exec: the command and its arguments, URL-decoded, in order.",
    ),
    col(
        EXEC_CONTAINER,
        T::Utf8,
        true,
        "derived: `requestURI` query `container=`",
        "For pods/exec and pods/attach: the target container.",
    ),
];

/// Hive partition columns, appended by the table (not stored in the files).
pub const PARTITION_COLUMN_DEFS: &[ColumnDef] = &[
    col(
        CLUSTER,
        T::Utf8,
        false,
        "ingest: path `cluster=<c>`",
        "Cluster that sent the event: from the webhook URL path, client certificate or token, the Kafka topic/header, or `--cluster`.",
    ),
    col(
        DATE,
        T::Utf8,
        false,
        "ingest: path `date=YYYY-MM-DD`",
        "UTC date of `stage_at`. Filter on it (with `hour`) to prune whole directories.",
    ),
    col(
        HOUR,
        T::Utf8,
        false,
        "ingest: path `hour=HH`",
        "UTC hour (`00`–`23`) of `stage_at`.",
    ),
];

pub(crate) const DERIVED_NOTES: &str = "
## Derived columns

Derived columns are computed once at ingest so that detections never re-parse JSON per event. They are
null when the event carries no request body (audit level `Metadata` or `None`).

- **Pod spec** (`pod_*`): read from `requestObject` when it is a `Pod` (including the body of the
  `ephemeralcontainers` subresource) or a workload with a pod template (`Deployment`, `ReplicaSet`,
  `StatefulSet`, `DaemonSet`, `Job`, `ReplicationController`: `spec.template.spec`; `CronJob`:
  `spec.jobTemplate.spec.template.spec`). Rules that mean \"a pod was created\" filter
  `resource = 'pods' AND subresource IS NULL` themselves.
- **RBAC** (`role_ref_*`, `binding_subjects`, `role_*`): read from `requestObject` of
  `rolebindings`/`clusterrolebindings` and `roles`/`clusterroles` in `rbac.authorization.k8s.io`. The
  verb and resource unions lose which verbs go with which resources; the full rules are in `request_object`.
- **Exec** (`exec_*`): parsed from the query string of `requestURI` for the `exec` and `attach`
  subresources; present at every audit level because the URI always is.

## Secret redaction

By default no secret value or token is stored. By the request: for `secrets` (a Secret, a list of them,
a `Table`'s `rows[].object`, a watch event, a merge / strategic-merge / apply patch, a JSON patch whose
ops land in `data`, `stringData`, the annotations or `metadata`) every value under `data` and
`stringData` and every annotation that carries the secret (`kubectl.kubernetes.io/last-applied-configuration`,
or one holding a `data` document) is replaced by `\"<redacted>\"`; for `serviceaccounts/token`,
`tokenrequests` and `tokenreviews`, every `token` field. In any body, an object of kind `Secret`,
`SecretList`, `TokenRequest` or `TokenReview`, and a JSON document embedded in a string (a last-applied
annotation) that holds one, are redacted the same way. Keys stay, so forensics can still tell which keys
changed. A body that cannot be parsed faithfully (duplicate keys, nesting deeper than 128 levels) is
masked as text instead (the values of `data`, `stringData`, `value`, `token`, `…password`, `…secret`
and similar keys) and its event gets the annotation `auditlake.io/body-masked` naming the body and the
reason. `[ingest] redact_secrets = false` (or `auditlake ingest --no-redact-secrets`) keeps bodies as sent.
";
