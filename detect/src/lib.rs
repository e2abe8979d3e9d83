//! Detection rules as data (`rules/<id>/rule.toml` + `query.sql`), their parameters, the
//! engine that runs a rule over a time window and groups its hits into findings, and the runner
//! of each rule's fixtures.

pub mod engine;
pub mod error;
pub mod finding;
pub mod fixtures;
pub mod params;
pub mod rule;
pub mod scheduler;
pub mod sigma;
pub mod source;
pub mod store;
pub mod suppress;

pub use engine::{Detector, Window};
pub use error::DetectError;
pub use finding::{Finding, findings_from_batch, findings_to_batch};
pub use params::{PackConfig, ParamError, ParamOverride, ParamValue, Params, RuleOverrides};
pub use rule::{Rule, RuleTest, Severity, load_pack, load_rules};
pub use scheduler::{Alerts, Scheduler, SchedulerObserver, SchedulerOptions};
pub use source::{Embedded, Source};
pub use store::{Change, FindingsStore};
pub use suppress::{Suppression, SuppressionSpec, Suppressions};
