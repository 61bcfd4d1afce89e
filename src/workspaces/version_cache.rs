//! What workspace creation needs to know about a template version that cannot change once its import
//! has succeeded and it is attached to a template: the template, file, provisioner, parameter specs and
//! presets. Kept per replica, so a create reads from the database only what can change (the template,
//! the version's name and the owner's membership). No invalidation is needed: those rows are never
//! updated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::params::ParamSpec;

/// At most this many versions are kept; entries are dropped arbitrarily beyond it.
const ENTRIES: usize = 256;

/// One preset of a version with its parameter values (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPreset {
    pub id: Uuid,
    pub name: String,
    pub has_pool: bool,
    pub params: Vec<(String, String)>,
}

/// A succeeded template version, as workspace creation uses it.
#[derive(Debug)]
pub struct VersionContext {
    pub id: Uuid,
    pub template_id: Uuid,
    pub file_id: Uuid,
    pub provisioner: String,
    /// In the version's display order.
    pub specs: Arc<Vec<ParamSpec>>,
    pub presets: Vec<CachedPreset>,
}

/// The preset a create uses and what the checks need to know about it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChosenPreset {
    pub id: Option<Uuid>,
    /// The preset is one of this version's.
    pub belongs: bool,
    pub has_pool: bool,
    pub params: Vec<(String, String)>,
}

impl VersionContext {
    /// The requested preset, else the one the request's values select (Coder's rule, as the create
    /// path's SQL applies it: every value of the preset given, the preset with the most values wins,
    /// then the first by name; a preset without values matches any request).
    pub fn choose_preset(
        &self,
        requested: Option<Uuid>,
        values: &[(String, String)],
    ) -> ChosenPreset {
        let found = match requested {
            Some(id) => self.presets.iter().find(|p| p.id == id),
            None => self
                .presets
                .iter()
                .filter_map(|p| {
                    // As the SQL counts joined rows: a value given twice counts twice.
                    let mut rows = 0;
                    for param in &p.params {
                        let given = values.iter().filter(|v| *v == param).count();
                        if given == 0 {
                            return None;
                        }
                        rows += given;
                    }
                    Some((rows, p))
                })
                .min_by(|(ra, a), (rb, b)| rb.cmp(ra).then_with(|| a.name.cmp(&b.name)))
                .map(|(_, p)| p),
        };
        match (requested, found) {
            (_, Some(p)) => ChosenPreset {
                id: Some(p.id),
                belongs: true,
                has_pool: p.has_pool,
                params: p.params.clone(),
            },
            (Some(id), None) => ChosenPreset {
                id: Some(id),
                ..Default::default()
            },
            (None, None) => ChosenPreset::default(),
        }
    }
}

#[derive(Default)]
pub struct VersionCache(Mutex<HashMap<Uuid, Arc<VersionContext>>>);

impl VersionCache {
    pub fn get(&self, version: Uuid) -> Option<Arc<VersionContext>> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&version)
            .cloned()
    }

    pub fn insert(&self, context: VersionContext) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= ENTRIES {
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
        map.insert(context.id, Arc::new(context));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preset(n: u128, name: &str, params: &[(&str, &str)]) -> CachedPreset {
        CachedPreset {
            id: Uuid::from_u128(n),
            name: name.into(),
            has_pool: n % 2 == 1,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn version(presets: Vec<CachedPreset>) -> VersionContext {
        VersionContext {
            id: Uuid::from_u128(100),
            template_id: Uuid::nil(),
            file_id: Uuid::nil(),
            provisioner: "echo".into(),
            specs: Arc::default(),
            presets,
        }
    }

    fn values(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_requested_preset_is_used_and_a_foreign_one_does_not_belong() {
        let v = version(vec![preset(1, "small", &[("size", "s")])]);
        let chosen = v.choose_preset(Some(Uuid::from_u128(1)), &[]);
        assert_eq!(chosen.id, Some(Uuid::from_u128(1)));
        assert!(chosen.belongs && chosen.has_pool);
        assert_eq!(chosen.params, values(&[("size", "s")]));
        let foreign = v.choose_preset(Some(Uuid::from_u128(9)), &[]);
        assert_eq!(foreign.id, Some(Uuid::from_u128(9)));
        assert!(!foreign.belongs && !foreign.has_pool && foreign.params.is_empty());
    }

    #[test]
    fn values_select_the_fullest_matching_preset_then_the_first_by_name() {
        let v = version(vec![
            preset(1, "b-small", &[("size", "s")]),
            preset(2, "a-small", &[("size", "s")]),
            preset(3, "small-eu", &[("region", "eu"), ("size", "s")]),
            preset(5, "large", &[("size", "l")]),
        ]);
        let pick = |given: &[(&str, &str)]| v.choose_preset(None, &values(given)).id;
        assert_eq!(pick(&[("size", "s")]), Some(Uuid::from_u128(2)));
        assert_eq!(
            pick(&[("size", "s"), ("region", "eu")]),
            Some(Uuid::from_u128(3))
        );
        assert_eq!(
            pick(&[("size", "l"), ("region", "eu")]),
            Some(Uuid::from_u128(5))
        );
        assert_eq!(pick(&[("size", "m")]), None);
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn a_preset_without_values_matches_any_request_but_loses_to_a_fuller_one() {
        let v = version(vec![
            preset(1, "default", &[]),
            preset(2, "small", &[("size", "s")]),
        ]);
        assert_eq!(v.choose_preset(None, &[]).id, Some(Uuid::from_u128(1)));
        let chosen = v.choose_preset(None, &values(&[("size", "s")]));
        assert_eq!(chosen.id, Some(Uuid::from_u128(2)));
        assert!(chosen.belongs);
    }
}
