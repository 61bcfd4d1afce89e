//! The reconciliation plan: what one tick of the prebuild reconciler should do for each preset.
//!
//! Pure code only (no I/O, no clock): the loop reads one [`PresetSnapshot`] per preset, passes
//! "now" and the server flags, and executes the returned [`Action`]s in order. Everything that
//! decides *what* to do lives here so it can be unit- and property-tested; everything that
//! *does* it (transactions, provisioner jobs, the ownership re-check before a delete) lives in
//! the loop.
//!
//! Rules, in the order of the spec's "Reconciliation loop" section:
//!
//! 1. **Backoff**: failed creation builds within the lookback window hold the preset back until
//!    `last_failure + failures × backoff_interval` (inclusive, as Coder's `!now.After(until)`);
//!    meanwhile the plan has no actions at all, not even deletes.
//! 2. **Inactive** preset (not the template's active version, or the template is deleted or
//!    deprecated): desired is 0; cancel pending creation jobs, delete every running prebuild
//!    (expired or not) oldest first, create none.
//! 3. **Active** preset: delete every expired prebuild, then the extraneous ones (non-expired
//!    beyond desired, oldest first), then create `max(0, desired − running_non_expired −
//!    starting)` unless the preset is at the failure hard limit (creates stop, deletes continue).
//!
//! Stopped and failed prebuilds never appear in a snapshot's `running`, so they are neither
//! counted nor deleted; in-progress stop/delete builds are reported but never touched.

use std::fmt;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use uuid::Uuid;

use crate::prebuilds::schedule::{desired_instances, Scheduling};

/// Server flags that shape the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanConfig {
    /// `CODER_WORKSPACE_PREBUILDS_RECONCILIATION_BACKOFF_INTERVAL` (default 1m): backoff added
    /// per failure.
    pub backoff_interval: Duration,
    /// `CODER_WORKSPACE_PREBUILDS_RECONCILIATION_BACKOFF_LOOKBACK_PERIOD` (default 1h): only
    /// failures at or after `now − lookback` count.
    pub backoff_lookback: Duration,
    /// `CODER_WORKSPACE_PREBUILDS_FAILURE_HARD_LIMIT` (default 3): a preset whose latest this
    /// many creation builds all failed stops creating. 0 disables the limit.
    pub failure_hard_limit: u32,
}

impl Default for PlanConfig {
    /// Coder's defaults: 1m interval, 1h lookback, hard limit 3.
    fn default() -> Self {
        PlanConfig {
            backoff_interval: Duration::minutes(1),
            backoff_lookback: Duration::hours(1),
            failure_hard_limit: 3,
        }
    }
}

/// A prebuild whose latest build is a successful `start` and which is still owned by the
/// `prebuilds` user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPrebuild {
    pub workspace_id: Uuid,
    /// The workspace's `created_at`: age and invalidation are measured from it.
    pub created_at: DateTime<Utc>,
    /// Every agent reports lifecycle state `ready`.
    pub ready: bool,
}

/// Everything the plan needs to know about one preset with a pool, read in the tick's snapshot
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetSnapshot {
    pub preset_id: Uuid,
    pub preset_name: String,
    pub template_name: String,
    pub template_version_id: Uuid,
    pub organization_name: String,
    /// The preset belongs to its template's active version and the template is neither deleted
    /// nor deprecated.
    pub active: bool,
    /// `prebuilds { instances }`.
    pub base_instances: i32,
    /// `prebuilds { scheduling { … } }`, if any.
    pub scheduling: Option<Scheduling>,
    /// `expiration_policy { ttl }` in seconds; `None` or ≤ 0 means prebuilds never expire by age.
    pub ttl_seconds: Option<i32>,
    /// Set by the invalidate API: prebuilds created strictly before it are expired.
    pub last_invalidated_at: Option<DateTime<Utc>>,
    /// Running prebuilds (latest build a successful start), in any order.
    pub running: Vec<RunningPrebuild>,
    /// Prebuilds whose latest build is a start with a pending or running job.
    pub starting: i32,
    /// In-progress stop/delete builds: reported, never counted towards desired, never touched.
    pub stopping_or_deleting: i32,
    /// `(workspace_id, job_id)` of creation jobs not yet picked up by a provisioner; only acted
    /// on for inactive presets.
    pub pending_create_jobs: Vec<(Uuid, Uuid)>,
    /// When creation builds of this preset failed. The plan itself ignores entries before
    /// `now − backoff_lookback`, so the loader may pass a wider window.
    pub recent_creation_failures: Vec<DateTime<Utc>>,
    /// Outcome of the latest creation builds, most recent first (`true` = succeeded).
    pub latest_creation_results: Vec<bool>,
}

/// Why a prebuild is deleted (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteReason {
    /// Older than the preset's ttl, or created before its `last_invalidated_at`.
    Expired,
    /// Non-expired but beyond the desired count.
    Extraneous,
    /// The preset is inactive, so all its prebuilds go.
    InactiveVersion,
}

impl DeleteReason {
    /// Stable lowercase name, suitable as a log field.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteReason::Expired => "expired",
            DeleteReason::Extraneous => "extraneous",
            DeleteReason::InactiveVersion => "inactive_version",
        }
    }
}

impl fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a preset's plan. A plan never holds an empty action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create this many prebuilds (each its own transaction and start build).
    Create { count: u32 },
    /// Delete these prebuilds, oldest first (the executor re-checks ownership first).
    Delete {
        workspace_ids: Vec<Uuid>,
        reason: DeleteReason,
    },
    /// Cancel these `(workspace_id, job_id)` creation jobs and orphan-delete their workspaces.
    CancelPending { jobs: Vec<(Uuid, Uuid)> },
}

/// What to do for one preset this tick, with the counts behind the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetPlan {
    pub preset_id: Uuid,
    /// Desired count now (0 for inactive presets).
    pub desired: i32,
    /// Running prebuilds, expired ones included (the `…_running` gauge).
    pub running: i32,
    /// Running, non-expired and ready (the `…_eligible` gauge); 0 for inactive presets, whose
    /// prebuilds are never claimed.
    pub eligible: i32,
    pub starting: i32,
    pub expired: i32,
    /// Non-expired running prebuilds beyond desired; 0 for inactive presets (their deletes
    /// have reason [`DeleteReason::InactiveVersion`]).
    pub extraneous: i32,
    /// Set when the preset is backing off this tick (then `actions` is empty).
    pub backoff_until: Option<DateTime<Utc>>,
    /// The latest `failure_hard_limit` creation builds all failed: no creates.
    pub hard_limited: bool,
    /// In execution order.
    pub actions: Vec<Action>,
    /// One human sentence saying why these actions (or why none).
    pub reason: String,
}

impl PresetPlan {
    /// Total prebuilds this plan creates.
    #[must_use]
    pub fn create_count(&self) -> u32 {
        self.actions
            .iter()
            .map(|a| match a {
                Action::Create { count } => *count,
                _ => 0,
            })
            .sum()
    }

    /// Every workspace this plan deletes, in execution order.
    pub fn deleted_workspace_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.actions
            .iter()
            .flat_map(|a| match a {
                Action::Delete { workspace_ids, .. } => workspace_ids.as_slice(),
                _ => &[],
            })
            .copied()
    }

    /// Whether the plan does nothing.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Whether a running prebuild is expired at `now`: created strictly before
/// `last_invalidated_at`, or older than `ttl_seconds` (strictly greater; `None` or ≤ 0 = never).
#[must_use]
pub fn is_expired(
    created_at: DateTime<Utc>,
    ttl_seconds: Option<i32>,
    last_invalidated_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    if last_invalidated_at.is_some_and(|at| created_at < at) {
        return true;
    }
    match ttl_seconds {
        Some(ttl) if ttl > 0 => {
            now.signed_duration_since(created_at) > Duration::seconds(i64::from(ttl))
        }
        _ => false,
    }
}

/// Desired count of a preset at `now`: first matching schedule, else the base instances
/// (negative values read as 0); always 0 for inactive presets.
#[must_use]
pub fn desired_count(s: &PresetSnapshot, now: DateTime<Utc>) -> i32 {
    if !s.active {
        return 0;
    }
    desired_instances(s.base_instances, s.scheduling.as_ref(), now).max(0)
}

/// Whether the latest `limit` creation results (most recent first) are all failures. Fewer
/// results than `limit` never reach the limit; `limit == 0` disables it.
#[must_use]
pub fn at_failure_hard_limit(latest_creation_results: &[bool], limit: u32) -> bool {
    if limit == 0 {
        return false;
    }
    let n = usize::try_from(limit).unwrap_or(usize::MAX);
    latest_creation_results
        .get(..n)
        .is_some_and(|latest| latest.iter().all(|succeeded| !succeeded))
}

/// Failures counted for backoff and the instant backoff ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    failures: usize,
    until: DateTime<Utc>,
}

/// Failures at or after `now − lookback`, and `last_failure + failures × interval` (saturating
/// at the largest representable instant). `None` without failures in the window.
fn backoff(failures: &[DateTime<Utc>], now: DateTime<Utc>, cfg: &PlanConfig) -> Option<Backoff> {
    let since = now
        .checked_sub_signed(cfg.backoff_lookback)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let recent = failures.iter().filter(|at| **at >= since);
    let failures = recent.clone().count();
    let last = recent.max()?;
    let until = cfg
        .backoff_interval
        .checked_mul(i32::try_from(failures).unwrap_or(i32::MAX))
        .and_then(|wait| last.checked_add_signed(wait))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    Some(Backoff { failures, until })
}

/// Plans one preset. Deterministic: the order of `running` and `pending_create_jobs` in the
/// snapshot does not matter (ties in age are broken by workspace id).
#[must_use]
pub fn plan_preset(s: &PresetSnapshot, now: DateTime<Utc>, cfg: &PlanConfig) -> PresetPlan {
    let desired = desired_count(s, now);
    let starting = s.starting.max(0);

    let mut running: Vec<&RunningPrebuild> = s.running.iter().collect();
    running.sort_by_key(|p| (p.created_at, p.workspace_id));
    let (expired, fresh): (Vec<&RunningPrebuild>, Vec<&RunningPrebuild>) = running
        .iter()
        .partition(|p| is_expired(p.created_at, s.ttl_seconds, s.last_invalidated_at, now));

    let desired_len = usize::try_from(desired).unwrap_or(0);
    let extraneous = if s.active {
        fresh.len().saturating_sub(desired_len)
    } else {
        0
    };
    let eligible = if s.active {
        fresh.iter().filter(|p| p.ready).count()
    } else {
        0
    };
    let hard_limited = at_failure_hard_limit(&s.latest_creation_results, cfg.failure_hard_limit);

    let mut plan = PresetPlan {
        preset_id: s.preset_id,
        desired,
        running: saturating_i32(running.len()),
        eligible: saturating_i32(eligible),
        starting,
        expired: saturating_i32(expired.len()),
        extraneous: saturating_i32(extraneous),
        backoff_until: None,
        hard_limited,
        actions: Vec::new(),
        reason: String::new(),
    };

    // 1. Backoff: nothing at all this tick.
    if let Some(b) = backoff(&s.recent_creation_failures, now, cfg).filter(|b| now <= b.until) {
        plan.backoff_until = Some(b.until);
        plan.reason = format!(
            "backing off until {} after {} within the last {}: no creates or deletes this tick",
            b.until.to_rfc3339_opts(SecondsFormat::Secs, true),
            counted(
                b.failures,
                "failed creation build",
                "failed creation builds"
            ),
            human_duration(cfg.backoff_lookback),
        );
        return plan;
    }

    // 2. Inactive preset: clean up, never create.
    if !s.active {
        let mut jobs = s.pending_create_jobs.clone();
        jobs.sort_unstable();
        let ids: Vec<Uuid> = running.iter().map(|p| p.workspace_id).collect();
        let mut done = Vec::new();
        if !jobs.is_empty() {
            done.push(format!(
                "cancelling {}",
                counted(jobs.len(), "pending creation job", "pending creation jobs")
            ));
            plan.actions.push(Action::CancelPending { jobs });
        }
        if !ids.is_empty() {
            done.push(format!(
                "deleting {} oldest first",
                counted(ids.len(), "running prebuild", "running prebuilds")
            ));
            plan.actions.push(Action::Delete {
                workspace_ids: ids,
                reason: DeleteReason::InactiveVersion,
            });
        }
        done.push("creating none".to_owned());
        plan.reason = format!(
            "preset is inactive (not the active template version, or the template is deleted or deprecated): {}",
            done.join(", ")
        );
        return plan;
    }

    // 3. Active preset: expired, then extraneous (oldest first), then creates.
    let mut done = Vec::new();
    if !expired.is_empty() {
        done.push(format!("deleting {} expired", expired.len()));
        plan.actions.push(Action::Delete {
            workspace_ids: expired.iter().map(|p| p.workspace_id).collect(),
            reason: DeleteReason::Expired,
        });
    }
    if extraneous > 0 {
        done.push(format!("deleting {extraneous} extraneous oldest first"));
        plan.actions.push(Action::Delete {
            workspace_ids: fresh[..extraneous].iter().map(|p| p.workspace_id).collect(),
            reason: DeleteReason::Extraneous,
        });
    }
    let fresh_count = i64::try_from(fresh.len()).unwrap_or(i64::MAX);
    let missing = (i64::from(desired) - fresh_count - i64::from(starting)).max(0);
    // missing ≤ desired ≤ i32::MAX, so the conversion cannot fail.
    let missing = u32::try_from(missing).unwrap_or(0);
    if hard_limited {
        done.push(format!(
            "creating 0{} (hard limit: the last {} failed)",
            if missing > 0 {
                format!(" instead of {missing}")
            } else {
                String::new()
            },
            counted(
                usize::try_from(cfg.failure_hard_limit).unwrap_or(usize::MAX),
                "creation build",
                "creation builds"
            ),
        ));
    } else {
        done.push(format!("creating {missing}"));
        if missing > 0 {
            plan.actions.push(Action::Create { count: missing });
        }
    }
    let expired_note = if expired.is_empty() {
        String::new()
    } else {
        format!(" ({} expired)", expired.len())
    };
    plan.reason = format!(
        "{} of {desired} desired running{expired_note}, {starting} starting: {}",
        fresh.len(),
        done.join(", ")
    );
    plan
}

/// Plans every preset of a snapshot, in snapshot order.
#[must_use]
pub fn plan(snapshot: &[PresetSnapshot], now: DateTime<Utc>, cfg: &PlanConfig) -> Vec<PresetPlan> {
    snapshot.iter().map(|s| plan_preset(s, now, cfg)).collect()
}

fn saturating_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn counted(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// `1h`, `90m`, `45s`: the largest whole unit.
fn human_duration(d: Duration) -> String {
    let secs = d.num_seconds();
    if secs != 0 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs != 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Monday 2025-03-03 09:00:00 UTC.
    fn monday_9() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 3, 9, 0, 0).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn secs(n: i64) -> Duration {
        Duration::seconds(n)
    }

    /// Fixture builder: an active preset with `base` instances and nothing else, observed at
    /// `now`; running prebuilds are given by age so tests read in relative time.
    struct Fx {
        s: PresetSnapshot,
        now: DateTime<Utc>,
    }

    impl Fx {
        fn active(base: i32) -> Fx {
            Fx {
                s: PresetSnapshot {
                    preset_id: id(0xABC),
                    preset_name: "dev".into(),
                    template_name: "tpl".into(),
                    template_version_id: id(0xDEF),
                    organization_name: "coder".into(),
                    active: true,
                    base_instances: base,
                    scheduling: None,
                    ttl_seconds: None,
                    last_invalidated_at: None,
                    running: Vec::new(),
                    starting: 0,
                    stopping_or_deleting: 0,
                    pending_create_jobs: Vec::new(),
                    recent_creation_failures: Vec::new(),
                    latest_creation_results: Vec::new(),
                },
                now: monday_9(),
            }
        }
        fn inactive(base: i32) -> Fx {
            let mut fx = Fx::active(base);
            fx.s.active = false;
            fx
        }
        fn at(mut self, now: DateTime<Utc>) -> Fx {
            self.now = now;
            self
        }
        /// A ready running prebuild `n` created `age` seconds before now.
        fn run(self, n: u128, age: i64) -> Fx {
            self.run_ready(n, age, true)
        }
        fn run_ready(mut self, n: u128, age: i64, ready: bool) -> Fx {
            self.s.running.push(RunningPrebuild {
                workspace_id: id(n),
                created_at: self.now - secs(age),
                ready,
            });
            self
        }
        fn starting(mut self, n: i32) -> Fx {
            self.s.starting = n;
            self
        }
        fn ttl(mut self, t: i32) -> Fx {
            self.s.ttl_seconds = Some(t);
            self
        }
        fn invalidated(mut self, ago: i64) -> Fx {
            self.s.last_invalidated_at = Some(self.now - secs(ago));
            self
        }
        fn failed(mut self, ago: i64) -> Fx {
            self.s.recent_creation_failures.push(self.now - secs(ago));
            self
        }
        fn results(mut self, r: &[bool]) -> Fx {
            self.s.latest_creation_results = r.to_vec();
            self
        }
        fn pending(mut self, ws: u128, job: u128) -> Fx {
            self.s.pending_create_jobs.push((id(ws), id(job)));
            self
        }
        fn schedule(mut self, tz: &str, list: &[(&str, i32)]) -> Fx {
            let list: Vec<(String, i32)> =
                list.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect();
            self.s.scheduling = Some(Scheduling::parse(tz, &list).unwrap());
            self
        }
        fn plan(&self) -> PresetPlan {
            plan_preset(&self.s, self.now, &PlanConfig::default())
        }
        fn plan_with(&self, cfg: &PlanConfig) -> PresetPlan {
            plan_preset(&self.s, self.now, cfg)
        }
    }

    fn delete(ids: &[u128], reason: DeleteReason) -> Action {
        Action::Delete {
            workspace_ids: ids.iter().map(|n| id(*n)).collect(),
            reason,
        }
    }

    // ---- active presets ------------------------------------------------------------------

    #[test]
    fn creates_what_is_missing_minus_starting() {
        let p = Fx::active(3).run(1, 60).starting(1).plan();
        assert_eq!(p.actions, vec![Action::Create { count: 1 }]);
        assert_eq!(
            (
                p.desired,
                p.running,
                p.eligible,
                p.starting,
                p.expired,
                p.extraneous
            ),
            (3, 1, 1, 1, 0, 0)
        );
        assert_eq!(p.reason, "1 of 3 desired running, 1 starting: creating 1");

        let p = Fx::active(3).plan();
        assert_eq!(p.actions, vec![Action::Create { count: 3 }]);
    }

    #[test]
    fn nothing_to_do_when_running_plus_starting_covers_desired() {
        let p = Fx::active(3).run(1, 60).run(2, 30).starting(1).plan();
        assert!(p.is_noop());
        assert_eq!(p.reason, "2 of 3 desired running, 1 starting: creating 0");
        // Starting builds beyond desired are not cancelled and never make creates negative.
        let p = Fx::active(1).starting(4).plan();
        assert!(p.is_noop());
    }

    #[test]
    fn extraneous_deleted_oldest_first_with_id_tie_break() {
        // 3 and 2 share a creation time: the smaller id goes first.
        let fx = Fx::active(2)
            .run(5, 10)
            .run(3, 500)
            .run(2, 500)
            .run(4, 100)
            .starting(1);
        let p = fx.plan();
        assert_eq!(p.actions, vec![delete(&[2, 3], DeleteReason::Extraneous)]);
        assert_eq!((p.running, p.extraneous, p.expired), (4, 2, 0));
        assert_eq!(
            p.reason,
            "4 of 2 desired running, 1 starting: deleting 2 extraneous oldest first, creating 0"
        );
    }

    #[test]
    fn desired_zero_deletes_all_running() {
        let p = Fx::active(0).run(1, 10).run(2, 20).plan();
        assert_eq!(p.actions, vec![delete(&[2, 1], DeleteReason::Extraneous)]);
    }

    #[test]
    fn eligible_counts_ready_non_expired() {
        let p = Fx::active(5)
            .ttl(3600)
            .run_ready(1, 10, true)
            .run_ready(2, 10, false)
            .run_ready(3, 7200, true)
            .plan();
        assert_eq!((p.running, p.eligible, p.expired), (3, 1, 1));
    }

    #[test]
    fn stopping_and_deleting_builds_neither_count_nor_get_touched() {
        let mut fx = Fx::active(2).run(1, 10);
        fx.s.stopping_or_deleting = 7;
        let p = fx.plan();
        assert_eq!(p.actions, vec![Action::Create { count: 1 }]);
    }

    #[test]
    fn negative_inputs_are_clamped() {
        let p = Fx::active(-2).starting(-5).run(1, 10).plan();
        assert_eq!((p.desired, p.starting), (0, 0));
        assert_eq!(p.actions, vec![delete(&[1], DeleteReason::Extraneous)]);
    }

    // ---- expiry --------------------------------------------------------------------------

    #[test]
    fn expiry_boundary_is_strict() {
        let now = monday_9();
        assert!(!is_expired(now - secs(3600), Some(3600), None, now));
        assert!(is_expired(now - secs(3601), Some(3600), None, now));
        // No ttl, or 0, or nonsense: never by age.
        assert!(!is_expired(now - secs(10_000_000), None, None, now));
        assert!(!is_expired(now - secs(10_000_000), Some(0), None, now));
        assert!(!is_expired(now - secs(10_000_000), Some(-1), None, now));
    }

    #[test]
    fn expired_are_deleted_and_replaced() {
        let p = Fx::active(2).ttl(3600).run(1, 3601).run(2, 3600).plan();
        assert_eq!(
            p.actions,
            vec![
                delete(&[1], DeleteReason::Expired),
                Action::Create { count: 1 }
            ]
        );
        assert_eq!(
            (p.running, p.expired, p.extraneous, p.eligible),
            (2, 1, 0, 1)
        );
        assert_eq!(
            p.reason,
            "1 of 2 desired running (1 expired), 0 starting: deleting 1 expired, creating 1"
        );
    }

    #[test]
    fn invalidation_expires_prebuilds_created_strictly_before() {
        let fx = Fx::active(3)
            .invalidated(600)
            .run(1, 601)
            .run(2, 600)
            .run(3, 10);
        let p = fx.plan();
        assert_eq!(
            p.actions,
            vec![
                delete(&[1], DeleteReason::Expired),
                Action::Create { count: 1 }
            ]
        );
        let now = fx.now;
        assert!(is_expired(
            now - secs(601),
            None,
            Some(now - secs(600)),
            now
        ));
        assert!(!is_expired(
            now - secs(600),
            None,
            Some(now - secs(600)),
            now
        ));
    }

    #[test]
    fn expired_then_extraneous_then_create_order() {
        // desired 1; three fresh (ages 30, 20, 10) and two expired (ages 9000, 8000).
        let p = Fx::active(1)
            .ttl(3600)
            .run(10, 10)
            .run(20, 9000)
            .run(30, 30)
            .run(40, 8000)
            .run(50, 20)
            .plan();
        assert_eq!(
            p.actions,
            vec![
                delete(&[20, 40], DeleteReason::Expired),
                delete(&[30, 50], DeleteReason::Extraneous),
            ]
        );
        assert_eq!((p.running, p.expired, p.extraneous), (5, 2, 2));
    }

    // ---- schedules -----------------------------------------------------------------------

    #[test]
    fn schedule_changes_desired() {
        let weekday = [("* 8-18 * * 1-5", 3)];
        let p = Fx::active(1).schedule("UTC", &weekday).plan();
        assert_eq!(p.desired, 3);
        assert_eq!(p.actions, vec![Action::Create { count: 3 }]);

        // Saturday 2025-03-08 09:00: no schedule matches, the base applies, extras go.
        let saturday = Utc.with_ymd_and_hms(2025, 3, 8, 9, 0, 0).unwrap();
        let p = Fx::active(1)
            .at(saturday)
            .schedule("UTC", &weekday)
            .run(1, 100)
            .run(2, 50)
            .run(3, 10)
            .plan();
        assert_eq!(p.desired, 1);
        assert_eq!(p.actions, vec![delete(&[1, 2], DeleteReason::Extraneous)]);

        // A zero-instance schedule empties the pool.
        let p = Fx::active(2)
            .schedule("UTC", &[("* * * * 1", 0)])
            .run(1, 10)
            .plan();
        assert_eq!(p.desired, 0);
        assert_eq!(p.actions, vec![delete(&[1], DeleteReason::Extraneous)]);
    }

    #[test]
    fn berlin_switch_at_0800_follows_the_wall_clock_across_dst() {
        // 2026-03-29 is the spring-forward Sunday in Europe/Berlin (CET+1 → CEST+2).
        let working = [("* 8-18 * * *", 3)];
        let at = |y, m, d, h, min| Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap();
        let cases = [
            // Saturday before: 07:59 CET = 06:59 UTC, 08:00 CET = 07:00 UTC.
            (at(2026, 3, 28, 6, 59), 1),
            (at(2026, 3, 28, 7, 0), 3),
            // Monday after: 07:59 CEST = 05:59 UTC, 08:00 CEST = 06:00 UTC.
            (at(2026, 3, 30, 5, 59), 1),
            (at(2026, 3, 30, 6, 0), 3),
            // The end of the window moves too: 18:59 CEST = 16:59 UTC in, 19:00 CEST out.
            (at(2026, 3, 30, 16, 59), 3),
            (at(2026, 3, 30, 17, 0), 1),
            // Autumn back (2026-10-25): 08:00 CET is 07:00 UTC again.
            (at(2026, 10, 26, 6, 59), 1),
            (at(2026, 10, 26, 7, 0), 3),
        ];
        for (now, desired) in cases {
            let p = Fx::active(1)
                .at(now)
                .schedule("Europe/Berlin", &working)
                .run(1, 60)
                .plan();
            assert_eq!(p.desired, desired, "at {now}");
            let expected = if desired == 3 {
                vec![Action::Create { count: 2 }]
            } else {
                Vec::new()
            };
            assert_eq!(p.actions, expected, "at {now}");
        }
    }

    #[test]
    fn inactive_preset_ignores_schedule() {
        let p = Fx::inactive(1)
            .schedule("UTC", &[("* 8-18 * * 1-5", 3)])
            .plan();
        assert_eq!(p.desired, 0);
        assert!(p.is_noop());
    }

    // ---- backoff -------------------------------------------------------------------------

    #[test]
    fn backoff_blocks_every_action() {
        // Two failures in the last hour, the latest 30 s ago: until latest + 2 × 1m.
        let fx = Fx::active(3)
            .ttl(3600)
            .run(1, 9000) // expired: would be deleted
            .failed(600)
            .failed(30);
        let p = fx.plan();
        let until = fx.now - secs(30) + secs(120);
        assert_eq!(p.backoff_until, Some(until));
        assert!(p.is_noop());
        assert_eq!(
            p.reason,
            "backing off until 2025-03-03T09:01:30Z after 2 failed creation builds within the last 1h: no creates or deletes this tick"
        );
        // Counts are still reported.
        assert_eq!((p.desired, p.running, p.expired), (3, 1, 1));
    }

    #[test]
    fn backoff_ends_after_until_inclusive_like_coder() {
        // One failure at 09:00: backing off until 09:01:00, that instant included.
        let until = monday_9() + secs(60);
        let at_until = Fx::active(1).at(until).failed(60).plan();
        assert_eq!(at_until.backoff_until, Some(until));
        assert!(at_until.is_noop());
        let after = Fx::active(1).at(until + secs(1)).failed(61).plan();
        assert_eq!(after.backoff_until, None);
        assert_eq!(after.actions, vec![Action::Create { count: 1 }]);
    }

    #[test]
    fn failures_outside_lookback_are_ignored() {
        // One failure 2h ago (outside 1h lookback) and one 30 s ago: only one counts.
        let p = Fx::active(1).failed(7200).failed(30).plan();
        assert_eq!(p.backoff_until, Some(monday_9() + secs(30)));
        let p = Fx::active(1).failed(3601).plan();
        assert_eq!(p.backoff_until, None);
        assert_eq!(p.actions, vec![Action::Create { count: 1 }]);
        // Exactly at the edge of the lookback window counts (>=), but backoff is long over.
        let cfg = PlanConfig {
            backoff_interval: Duration::hours(2),
            ..PlanConfig::default()
        };
        let p = Fx::active(1).failed(3600).plan_with(&cfg);
        assert_eq!(p.backoff_until, Some(monday_9() + Duration::hours(1)));
    }

    #[test]
    fn backoff_overflow_saturates_instead_of_panicking() {
        let cfg = PlanConfig {
            backoff_interval: Duration::MAX,
            ..PlanConfig::default()
        };
        let p = Fx::active(1).failed(1).failed(2).plan_with(&cfg);
        assert_eq!(p.backoff_until, Some(DateTime::<Utc>::MAX_UTC));
        let cfg = PlanConfig {
            backoff_lookback: Duration::MAX,
            ..PlanConfig::default()
        };
        assert!(Fx::active(1).failed(10).plan_with(&cfg).is_noop());
    }

    #[test]
    fn backoff_applies_to_inactive_presets_too() {
        // Spec order: backoff is checked before the inactive rule.
        let p = Fx::inactive(1).run(1, 10).failed(5).plan();
        assert!(p.is_noop());
        assert!(p.backoff_until.is_some());
    }

    // ---- inactive presets ----------------------------------------------------------------

    #[test]
    fn inactive_cancels_pending_and_deletes_all_oldest_first() {
        let p = Fx::inactive(5)
            .ttl(3600)
            .pending(9, 99)
            .pending(8, 88)
            .run_ready(1, 10, false)
            .run(2, 9000)
            .run(3, 100)
            .plan();
        assert_eq!(
            p.actions,
            vec![
                Action::CancelPending {
                    jobs: vec![(id(8), id(88)), (id(9), id(99))]
                },
                delete(&[2, 3, 1], DeleteReason::InactiveVersion),
            ]
        );
        assert_eq!(
            (p.desired, p.running, p.eligible, p.expired, p.extraneous),
            (0, 3, 0, 1, 0)
        );
        assert_eq!(
            p.reason,
            "preset is inactive (not the active template version, or the template is deleted or deprecated): cancelling 2 pending creation jobs, deleting 3 running prebuilds oldest first, creating none"
        );
    }

    #[test]
    fn inactive_with_nothing_left_is_a_noop() {
        let p = Fx::inactive(2).starting(1).plan();
        assert!(p.is_noop());
        assert!(p.reason.ends_with(": creating none"));
    }

    #[test]
    fn pending_jobs_of_active_presets_are_left_alone() {
        let p = Fx::active(1).pending(1, 2).starting(1).plan();
        assert!(p.is_noop());
    }

    // ---- hard limit ----------------------------------------------------------------------

    #[test]
    fn hard_limit_stops_creates_but_not_deletes() {
        let p = Fx::active(3)
            .ttl(3600)
            .run(1, 9000)
            .results(&[false, false, false, true])
            .plan();
        assert!(p.hard_limited);
        assert_eq!(p.actions, vec![delete(&[1], DeleteReason::Expired)]);
        assert_eq!(
            p.reason,
            "0 of 3 desired running (1 expired), 0 starting: deleting 1 expired, creating 0 instead of 3 (hard limit: the last 3 creation builds failed)"
        );
        // Extraneous deletes continue too.
        let p = Fx::active(1)
            .run(1, 20)
            .run(2, 10)
            .results(&[false; 3])
            .plan();
        assert_eq!(p.actions, vec![delete(&[1], DeleteReason::Extraneous)]);
    }

    #[test]
    fn hard_limit_needs_the_latest_n_all_failed() {
        assert!(at_failure_hard_limit(&[false, false, false], 3));
        assert!(!at_failure_hard_limit(&[false, false, true], 3));
        assert!(!at_failure_hard_limit(&[true, false, false, false], 3));
        assert!(!at_failure_hard_limit(&[false, false], 3));
        assert!(!at_failure_hard_limit(&[false; 10], 0));
        assert!(at_failure_hard_limit(&[false], 1));
        let p = Fx::active(2).results(&[false, false, true]).plan();
        assert!(!p.hard_limited);
        assert_eq!(p.actions, vec![Action::Create { count: 2 }]);
        let cfg = PlanConfig {
            failure_hard_limit: 0,
            ..PlanConfig::default()
        };
        let p = Fx::active(2).results(&[false; 5]).plan_with(&cfg);
        assert!(!p.hard_limited);
        assert_eq!(p.create_count(), 2);
    }

    // ---- whole snapshot ------------------------------------------------------------------

    #[test]
    fn plan_keeps_snapshot_order() {
        let mut a = Fx::active(1).s;
        a.preset_id = id(1);
        let mut b = Fx::inactive(1).run(7, 10).s;
        b.preset_id = id(2);
        let plans = plan(&[a, b], monday_9(), &PlanConfig::default());
        assert_eq!(
            plans.iter().map(|p| p.preset_id).collect::<Vec<_>>(),
            vec![id(1), id(2)]
        );
        assert_eq!(plans[0].create_count(), 1);
        assert_eq!(
            plans[1].deleted_workspace_ids().collect::<Vec<_>>(),
            vec![id(7)]
        );
    }

    // ---- properties ----------------------------------------------------------------------

    fn arb_snapshot() -> impl Strategy<Value = (PresetSnapshot, DateTime<Utc>, PlanConfig)> {
        let running = prop::collection::vec((0..12_000i64, 0..4u8, any::<bool>()), 0..10);
        (
            (any::<bool>(), 0..7i32, any::<bool>(), 0..170i64),
            (prop::option::of(0..7200i32), prop::option::of(0..9000i64)),
            running,
            (0..5i32, 0..3usize),
            prop::collection::vec(0..9000i64, 0..4),
            (prop::collection::vec(any::<bool>(), 0..6), 0..5u32),
        )
            .prop_map(
                |(
                    (active, base, scheduled, hour),
                    (ttl, invalidated),
                    running,
                    (starting, pending),
                    failures,
                    (results, limit),
                )| {
                    // A week of hours from Monday 00:00 so schedules match or not.
                    let now =
                        Utc.with_ymd_and_hms(2025, 3, 3, 0, 0, 0).unwrap() + Duration::hours(hour);
                    let scheduling = scheduled.then(|| {
                        Scheduling::parse(
                            "UTC",
                            &[
                                ("* 8-18 * * 1-5".to_owned(), 3),
                                ("* * * * 0,6".to_owned(), 0),
                            ],
                        )
                        .unwrap()
                    });
                    let s = PresetSnapshot {
                        preset_id: id(1),
                        preset_name: "p".into(),
                        template_name: "t".into(),
                        template_version_id: id(2),
                        organization_name: "o".into(),
                        active,
                        base_instances: base,
                        scheduling,
                        ttl_seconds: ttl,
                        last_invalidated_at: invalidated.map(|ago| now - secs(ago)),
                        // Few distinct ages (age bucket × 1000 s) so ties are common.
                        running: running
                            .iter()
                            .enumerate()
                            .map(|(i, (age, bucket, ready))| RunningPrebuild {
                                workspace_id: id(100 + i as u128),
                                created_at: now
                                    - secs(if *bucket == 0 {
                                        *age
                                    } else {
                                        i64::from(*bucket) * 1000
                                    }),
                                ready: *ready,
                            })
                            .collect(),
                        starting,
                        stopping_or_deleting: 1,
                        pending_create_jobs: (0..pending)
                            .map(|i| (id(500 + i as u128), id(600 + i as u128)))
                            .collect(),
                        recent_creation_failures: failures
                            .iter()
                            .map(|ago| now - secs(*ago))
                            .collect(),
                        latest_creation_results: results,
                    };
                    let cfg = PlanConfig {
                        failure_hard_limit: limit,
                        ..PlanConfig::default()
                    };
                    (s, now, cfg)
                },
            )
    }

    fn expired_ids(s: &PresetSnapshot, now: DateTime<Utc>) -> HashSet<Uuid> {
        s.running
            .iter()
            .filter(|p| is_expired(p.created_at, s.ttl_seconds, s.last_invalidated_at, now))
            .map(|p| p.workspace_id)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn creates_never_exceed_desired((s, now, cfg) in arb_snapshot()) {
            let p = plan_preset(&s, now, &cfg);
            prop_assert!(p.desired >= 0);
            prop_assert!(i64::from(p.create_count()) <= i64::from(p.desired));
            prop_assert_eq!(p.desired, desired_count(&s, now));
            // At most one action of each kind, never an empty one.
            for a in &p.actions {
                match a {
                    Action::Create { count } => prop_assert!(*count > 0),
                    Action::Delete { workspace_ids, .. } => prop_assert!(!workspace_ids.is_empty()),
                    Action::CancelPending { jobs } => prop_assert!(!jobs.is_empty()),
                }
            }
        }

        /// For an active preset that acts (no backoff, not hard-limited), let F be the running
        /// non-expired prebuilds, D desired, S starting and C the creates. After the deletes,
        /// exactly min(F, D) non-expired prebuilds remain and no expired one, and
        /// remaining + S + C = max(D, min(F, D) + S): the pool reaches D exactly unless the
        /// builds already starting overshoot it, which the plan never undoes.
        #[test]
        fn applying_the_plan_reaches_desired((s, now, cfg) in arb_snapshot()) {
            let p = plan_preset(&s, now, &cfg);
            prop_assume!(s.active && p.backoff_until.is_none() && !p.hard_limited);
            let deleted: HashSet<Uuid> = p.deleted_workspace_ids().collect();
            let expired = expired_ids(&s, now);
            let remaining: Vec<&RunningPrebuild> =
                s.running.iter().filter(|r| !deleted.contains(&r.workspace_id)).collect();
            prop_assert!(remaining.iter().all(|r| !expired.contains(&r.workspace_id)));
            prop_assert!(expired.iter().all(|e| deleted.contains(e)));
            let fresh = (s.running.len() - expired.len()) as i64;
            let (d, st, c) = (i64::from(p.desired), i64::from(s.starting), i64::from(p.create_count()));
            prop_assert_eq!(remaining.len() as i64, fresh.min(d));
            prop_assert_eq!(remaining.len() as i64 + st + c, d.max(fresh.min(d) + st));
            prop_assert_eq!(i64::from(p.extraneous), (fresh - d).max(0));
            prop_assert_eq!(i64::from(p.expired), expired.len() as i64);
            prop_assert_eq!(p.running as usize, s.running.len());
        }

        #[test]
        fn backoff_plan_is_empty((s, now, cfg) in arb_snapshot()) {
            let p = plan_preset(&s, now, &cfg);
            let since = now - cfg.backoff_lookback;
            let recent: Vec<_> = s.recent_creation_failures.iter().filter(|f| **f >= since).collect();
            let expect_backoff = recent.iter().max().is_some_and(|last| {
                now <= **last + cfg.backoff_interval * recent.len() as i32
            });
            prop_assert_eq!(p.backoff_until.is_some(), expect_backoff);
            if expect_backoff {
                prop_assert!(p.actions.is_empty());
                prop_assert!(p.reason.starts_with("backing off until"));
            }
        }

        #[test]
        fn inactive_never_creates_and_deletes_everything((s, now, cfg) in arb_snapshot()) {
            prop_assume!(!s.active);
            let p = plan_preset(&s, now, &cfg);
            prop_assert_eq!(p.create_count(), 0);
            prop_assert_eq!(p.desired, 0);
            if p.backoff_until.is_none() {
                let deleted: HashSet<Uuid> = p.deleted_workspace_ids().collect();
                let all: HashSet<Uuid> = s.running.iter().map(|r| r.workspace_id).collect();
                prop_assert_eq!(deleted, all);
                let cancelled: HashSet<(Uuid, Uuid)> = p.actions.iter().flat_map(|a| match a {
                    Action::CancelPending { jobs } => jobs.clone(),
                    _ => Vec::new(),
                }).collect();
                prop_assert_eq!(cancelled, s.pending_create_jobs.iter().copied().collect::<HashSet<_>>());
            }
        }

        #[test]
        fn hard_limited_never_creates((s, now, cfg) in arb_snapshot()) {
            let p = plan_preset(&s, now, &cfg);
            prop_assert_eq!(
                p.hard_limited,
                at_failure_hard_limit(&s.latest_creation_results, cfg.failure_hard_limit)
            );
            if p.hard_limited {
                prop_assert_eq!(p.create_count(), 0);
            }
        }

        /// Deletes are distinct ids of the snapshot's running prebuilds; each delete list is
        /// oldest first (ties by id); extraneous deletes are never younger than a kept
        /// non-expired prebuild.
        #[test]
        fn deletes_are_running_ids_oldest_first((s, now, cfg) in arb_snapshot()) {
            let p = plan_preset(&s, now, &cfg);
            let by_id: std::collections::HashMap<Uuid, &RunningPrebuild> =
                s.running.iter().map(|r| (r.workspace_id, r)).collect();
            let all: Vec<Uuid> = p.deleted_workspace_ids().collect();
            prop_assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
            let expired = expired_ids(&s, now);
            for a in &p.actions {
                if let Action::Delete { workspace_ids, reason } = a {
                    let keys: Vec<_> = workspace_ids
                        .iter()
                        .map(|w| by_id.get(w).map(|r| (r.created_at, r.workspace_id)))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| TestCaseError::fail("deleted id not in snapshot"))?;
                    prop_assert!(keys.windows(2).all(|w| w[0] < w[1]), "not oldest first: {:?}", keys);
                    if *reason == DeleteReason::Extraneous {
                        let newest_deleted = keys.last().copied();
                        for r in &s.running {
                            if !expired.contains(&r.workspace_id) && !workspace_ids.contains(&r.workspace_id) {
                                prop_assert!(newest_deleted < Some((r.created_at, r.workspace_id)));
                            }
                        }
                    }
                    if *reason == DeleteReason::Expired {
                        prop_assert!(workspace_ids.iter().all(|w| expired.contains(w)));
                    }
                }
            }
        }

        /// The plan does not depend on the order rows came out of the database.
        #[test]
        fn plan_ignores_input_order((s, now, cfg) in arb_snapshot(), seed in any::<u64>()) {
            let mut shuffled = s.clone();
            let n = shuffled.running.len();
            if n > 1 {
                for i in 0..n {
                    let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % n as u64) as usize;
                    shuffled.running.swap(i, j);
                }
            }
            shuffled.pending_create_jobs.reverse();
            prop_assert_eq!(plan_preset(&s, now, &cfg), plan_preset(&shuffled, now, &cfg));
        }
    }
}
