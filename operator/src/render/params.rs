//! Merging of parameter layers.
//!
//! A rendered template sees one parameter map, the merge of several layers, lowest priority first:
//! every `paramsRefs` entry in order, then the binding's `params`, then the target's `params`.
//! The merge follows JSON Merge Patch (RFC 7386) applied layer after layer to an empty map:
//!
//! - a key only in a lower layer keeps its value;
//! - objects merge recursively, key by key;
//! - anything else (strings, numbers, booleans, lists) in a higher layer replaces the lower value,
//!   including "empty" values (`""`, `0`, `false`, `[]`); lists are never appended;
//! - a `null` in a higher layer removes the key; since the merge starts from an empty map, `null`
//!   never survives into the result (except inside lists, which are taken as they are).

use serde_json::{Map, Value};

/// Merges parameter layers, lowest priority first; see the [module documentation](self).
pub fn merge_params(layers: &[&Map<String, Value>]) -> Map<String, Value> {
    let mut merged = Map::new();
    for layer in layers {
        merge_into(&mut merged, layer);
    }
    merged
}

/// Applies one layer on top of `base`.
fn merge_into(base: &mut Map<String, Value>, layer: &Map<String, Value>) {
    for (key, value) in layer {
        match value {
            Value::Null => {
                base.remove(key);
            }
            Value::Object(over) => {
                let slot = base.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(inner) = slot {
                    merge_into(inner, over);
                }
            }
            other => {
                base.insert(key.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn no_layers_is_empty() {
        assert!(merge_params(&[]).is_empty());
    }

    #[test]
    fn single_layer_is_copied() {
        let a = map(json!({"hostname": "r1", "bgp": {"asn": 65000}}));
        assert_eq!(merge_params(&[&a]), a);
    }

    #[test]
    fn later_layers_win() {
        let a = map(json!({"hostname": "a", "x": 1}));
        let b = map(json!({"hostname": "b"}));
        let c = map(json!({"hostname": "c", "y": 2}));
        assert_eq!(merge_params(&[&a, &b, &c]), map(json!({"hostname": "c", "x": 1, "y": 2})));
        // Order matters.
        assert_eq!(merge_params(&[&c, &b, &a]), map(json!({"hostname": "a", "x": 1, "y": 2})));
    }

    #[test]
    fn objects_merge_recursively() {
        let a = map(json!({"bgp": {"asn": 65000, "neighbors": {"10.0.0.1": {"remote_as": 1}}, "id": "1.1.1.1"}}));
        let b = map(json!({"bgp": {"asn": 65001, "neighbors": {"10.0.0.2": {"remote_as": 2}}}}));
        assert_eq!(
            merge_params(&[&a, &b]),
            map(json!({"bgp": {
                "asn": 65001,
                "id": "1.1.1.1",
                "neighbors": {"10.0.0.1": {"remote_as": 1}, "10.0.0.2": {"remote_as": 2}}
            }}))
        );
    }

    #[test]
    fn lists_replace_and_are_not_appended() {
        let a = map(json!({"dns": ["1.1.1.1", "8.8.8.8"]}));
        let b = map(json!({"dns": ["9.9.9.9"]}));
        assert_eq!(merge_params(&[&a, &b]), map(json!({"dns": ["9.9.9.9"]})));
        let empty = map(json!({"dns": []}));
        assert_eq!(merge_params(&[&a, &empty]), map(json!({"dns": []})));
    }

    #[test]
    fn zero_values_replace() {
        let a = map(json!({"s": "x", "n": 5, "b": true}));
        let b = map(json!({"s": "", "n": 0, "b": false}));
        assert_eq!(merge_params(&[&a, &b]), b);
    }

    #[test]
    fn scalar_and_object_replace_each_other() {
        let a = map(json!({"x": {"deep": 1}, "y": 3}));
        let b = map(json!({"x": "flat", "y": {"deep": 2}}));
        assert_eq!(merge_params(&[&a, &b]), map(json!({"x": "flat", "y": {"deep": 2}})));
    }

    #[test]
    fn null_removes_keys_at_any_depth() {
        let a = map(json!({"x": 1, "bgp": {"asn": 1, "password": "p"}}));
        let b = map(json!({"x": null, "bgp": {"password": null}, "absent": null}));
        assert_eq!(merge_params(&[&a, &b]), map(json!({"bgp": {"asn": 1}})));
        // A removed key can come back in a later layer.
        let c = map(json!({"x": 2}));
        assert_eq!(merge_params(&[&a, &b, &c]), map(json!({"x": 2, "bgp": {"asn": 1}})));
    }

    #[test]
    fn nulls_never_survive_but_stay_inside_lists() {
        let a = map(json!({"x": null, "o": {"y": null, "z": 1}, "l": [null, 1]}));
        assert_eq!(merge_params(&[&a]), map(json!({"o": {"z": 1}, "l": [null, 1]})));
    }

    #[test]
    fn inputs_are_not_modified() {
        let a = map(json!({"o": {"a": 1}}));
        let b = map(json!({"o": {"b": 2}}));
        let _ = merge_params(&[&a, &b]);
        assert_eq!(a, map(json!({"o": {"a": 1}})));
        assert_eq!(b, map(json!({"o": {"b": 2}})));
    }
}
