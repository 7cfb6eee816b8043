use serde_json::{Value, json};

use super::*;

fn obj(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "vrouter.kojuro.date/v1", "kind": kind,
           "metadata": {"name": name, "namespace": "net", "labels": {"role": "edge"}}, "spec": spec})
}

fn typed<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

fn bgp_template() -> Value {
    obj(
        "VRouterTemplate",
        "bgp",
        json!({"commands": "set protocols bgp system-as '{{ asn }}'\nset system host-name '{{ target.name }}'\n"}),
    )
}

fn common_params() -> Value {
    obj("VRouterParams", "common", json!({"params": {"asn": 65001}}))
}

fn target_obj(name: &str) -> Value {
    obj("VRouterTarget", name, json!({}))
}

fn binding_obj() -> Value {
    obj(
        "VRouterBinding",
        "core",
        json!({"templateRefs": [{"name": "bgp"}], "paramsRefs": [{"name": "common"}], "targetRefs": [{"name": "r1"}]}),
    )
}

/// The namespace: template bgp, params common, targets r1 and r2, binding core (bgp + common
/// → r1), a hand-written config on r2, Proxmox cluster pve.
fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.templates.insert("bgp".into(), typed(bgp_template()));
    s.params.insert("common".into(), typed(common_params()));
    s.targets.insert("r1".into(), typed(target_obj("r1")));
    s.targets.insert("r2".into(), typed(target_obj("r2")));
    s.bindings.insert("core".into(), typed(binding_obj()));
    s.configs.insert(
        "extra".into(),
        typed(obj(
            "VRouterConfig",
            "extra",
            json!({"targetRef": {"name": "r2"}, "commands": "set system time-zone 'UTC'\n"}),
        )),
    );
    s.proxmox_clusters.insert(
        "pve".into(),
        typed(obj(
            "ProxmoxCluster",
            "pve",
            json!({"endpoints": ["https://pve1:8006"], "credentialsRef": {"name": "pve-token"}}),
        )),
    );
    s
}

fn request(kind: &str, operation: Operation, object: Option<Value>) -> Request {
    let name = object.as_ref().and_then(|o| o["metadata"]["name"].as_str()).unwrap_or("x").to_owned();
    Request { kind: kind.into(), operation, namespace: "net".into(), name, object, old_object: None }
}

fn create(object: Value) -> Request {
    let kind = object["kind"].as_str().unwrap().to_owned();
    request(&kind, Operation::Create, Some(object))
}

fn delete(kind: &str, name: &str) -> Request {
    Request {
        kind: kind.into(),
        operation: Operation::Delete,
        namespace: "net".into(),
        name: name.into(),
        object: None,
        old_object: Some(obj(kind, name, json!({}))),
    }
}

#[track_caller]
fn allowed(v: Verdict) -> Verdict {
    assert!(v.allowed, "denied: {}", v.message());
    v
}

#[track_caller]
fn denied(v: Verdict, parts: &[&str]) {
    assert!(!v.allowed, "allowed, expected a denial containing {parts:?}");
    let m = v.message();
    for p in parts {
        assert!(m.contains(p), "{p:?} not in {m:?}");
    }
}

#[test]
fn a_complete_binding_is_allowed() {
    let v = allowed(review(&create(binding_obj()), &snapshot()));
    assert!(v.warnings.is_empty());
}

#[test]
fn the_deprecated_template_ref_is_allowed_with_a_warning() {
    let b = obj(
        "VRouterBinding",
        "old",
        json!({"templateRef": {"name": "bgp"}, "paramsRefs": [{"name": "common"}], "targetRefs": [{"name": "r1"}]}),
    );
    let v = allowed(review(&create(b), &snapshot()));
    assert_eq!(v.warnings, ["spec.templateRef is deprecated; use spec.templateRefs"]);
}

#[test]
fn a_binding_with_missing_references_is_denied_naming_each_field() {
    let b = obj(
        "VRouterBinding",
        "core",
        json!({"templateRef": {"name": "gone-a"}, "templateRefs": [{"name": "bgp"}, {"name": "gone"}], "paramsRefs": [{"name": "nope"}], "targetRefs": [{"name": "r1"}, {"name": "r9"}]}),
    );
    denied(
        review(&create(b), &snapshot()),
        &[
            "spec.templateRef.name: VRouterTemplate \"gone-a\" not found in \"net\"",
            "spec.templateRefs[1].name: VRouterTemplate \"gone\" not found",
            "spec.paramsRefs[0].name: VRouterParams \"nope\" not found",
            "spec.targetRefs[1].name: VRouterTarget \"r9\" not found",
        ],
    );
}

#[test]
fn a_binding_whose_render_fails_for_a_target_is_denied() {
    // Without the params, `asn` is undefined.
    let b = obj("VRouterBinding", "core", json!({"templateRefs": [{"name": "bgp"}], "targetRefs": [{"name": "r1"}]}));
    denied(review(&create(b), &snapshot()), &["spec: rendering for target \"r1\" fails", "undefined value \"asn\""]);
}

#[test]
fn a_binding_selecting_targets_renders_for_each_of_them() {
    let b = obj(
        "VRouterBinding",
        "sel",
        json!({"templateRefs": [{"name": "bgp"}], "targetSelector": {"matchLabels": {"role": "edge"}}}),
    );
    // Both r1 and r2 match and neither has `asn`.
    denied(review(&create(b), &snapshot()), &["target \"r1\" fails", "target \"r2\" fails"]);
}

#[test]
fn a_binding_breaking_the_shared_rules_is_denied_by_them() {
    let b = obj(
        "VRouterBinding",
        "core",
        json!({"templateRefs": [{"name": "bgp"}], "targetRefs": [{"name": "r1", "namespace": "other"}, {"name": "r1"}]}),
    );
    denied(
        review(&create(b), &snapshot()),
        &["spec.targetRefs[0].namespace: must be empty or \"net\"", "spec.targetRefs[1].name: \"r1\" is listed twice"],
    );
}

#[test]
fn a_template_that_does_not_compile_is_denied() {
    let t = obj("VRouterTemplate", "broken", json!({"commands": "set system host-name '{{ target.name '\n"}));
    denied(review(&create(t), &snapshot()), &["spec: template \"broken\" (commands)"]);
    let empty = obj("VRouterTemplate", "empty", json!({}));
    denied(review(&create(empty), &snapshot()), &["spec: set config, commands or both"]);
}

#[test]
fn a_template_change_that_breaks_a_binding_using_it_is_denied() {
    let t = obj("VRouterTemplate", "bgp", json!({"commands": "set protocols bgp system-as '{{ missing }}'\n"}));
    denied(
        review(&request("VRouterTemplate", Operation::Update, Some(t)), &snapshot()),
        &["VRouterBinding \"core\", target \"r1\", would fail with this template", "undefined value \"missing\""],
    );
    // The same content is fine where no binding uses it.
    let t = obj("VRouterTemplate", "unused", json!({"commands": "set protocols bgp system-as '{{ missing }}'\n"}));
    allowed(review(&create(t), &snapshot()));
}

/// Issue 21: `raw_syntax` is allowed but reported, naming the template, field and line; a
/// template without it has no warning.
#[test]
fn raw_syntax_in_a_template_is_a_warning() {
    let t = obj(
        "VRouterTemplate",
        "bgp",
        json!({"commands": "set protocols bgp system-as '{{ asn }}'\n{{ extra | default('') | raw_syntax }}\n"}),
    );
    let v = review(&request("VRouterTemplate", Operation::Update, Some(t)), &snapshot());
    assert!(v.allowed, "{v:?}");
    assert_eq!(
        v.warnings,
        ["spec.commands: template \"bgp\" (commands) line 2: raw_syntax prints a value as VyOS syntax, unquoted; \
          whoever writes that value can write any configuration"]
    );
    let t = obj("VRouterTemplate", "bgp", json!({"commands": "set protocols bgp system-as '{{ asn }}'\n"}));
    assert!(review(&request("VRouterTemplate", Operation::Update, Some(t)), &snapshot()).warnings.is_empty());
}

#[test]
fn a_template_rendering_invalid_commands_for_a_binding_is_denied() {
    let t = obj("VRouterTemplate", "bgp", json!({"commands": "frobnicate '{{ asn }}'\n"}));
    denied(
        review(&request("VRouterTemplate", Operation::Update, Some(t)), &snapshot()),
        &["rendered invalid commands"],
    );
}

#[test]
fn params_that_break_a_binding_are_denied() {
    let p = obj("VRouterParams", "common", json!({"params": {"other": 1}}));
    denied(
        review(&request("VRouterParams", Operation::Update, Some(p)), &snapshot()),
        &["VRouterBinding \"core\", target \"r1\", would fail with this params", "asn"],
    );
    let p = obj("VRouterParams", "common", json!({"params": {"asn": 65002}}));
    allowed(review(&request("VRouterParams", Operation::Update, Some(p)), &snapshot()));
}

#[test]
fn referenced_objects_cannot_be_deleted() {
    let s = snapshot();
    denied(
        review(&delete("VRouterTarget", "r1"), &s),
        &["VRouterTarget \"r1\" is still referenced", "VRouterBinding \"core\" lists it in spec.targetRefs[0]"],
    );
    denied(review(&delete("VRouterTarget", "r2"), &s), &["VRouterConfig \"extra\" targets it in spec.targetRef"]);
    denied(review(&delete("VRouterTemplate", "bgp"), &s), &["VRouterBinding \"core\" uses it in spec.templateRefs[0]"]);
    denied(review(&delete("VRouterParams", "common"), &s), &["VRouterBinding \"core\" uses it in spec.paramsRefs[0]"]);
    for (kind, name) in [
        ("VRouterTarget", "r3"),
        ("VRouterTemplate", "x"),
        ("VRouterParams", "x"),
        ("VRouterBinding", "core"),
        ("VRouterConfig", "extra"),
        ("ProxmoxCluster", "pve"),
    ] {
        allowed(review(&delete(kind, name), &s));
    }
}

#[test]
fn a_target_whose_generated_config_exists_names_its_binding() {
    let mut s = snapshot();
    let mut c: VRouterConfig = typed(obj(
        "VRouterConfig",
        "sel.r2",
        json!({"targetRef": {"name": "r2"}, "commands": "set system time-zone 'UTC'\n"}),
    ));
    c.metadata.annotations = Some([(crate::crd::ANNOTATION_BINDING.to_owned(), "sel".to_owned())].into());
    s.configs.insert("sel.r2".into(), c);
    denied(
        review(&delete("VRouterTarget", "r2"), &s),
        &["VRouterConfig \"sel.r2\"", "generated by VRouterBinding \"sel\""],
    );
}

#[test]
fn proxmox_references_must_exist_in_the_namespace() {
    let s = snapshot();
    let with = |cluster: Value| {
        obj(
            "VRouterTarget",
            "r5",
            json!({"provider": {"type": "proxmox", "proxmox": {"vmid": 100, "clusterRef": cluster}}}),
        )
    };
    allowed(review(&create(with(json!({"name": "pve"}))), &s));
    denied(
        review(&create(with(json!({"name": "gone"}))), &s),
        &["spec.provider.proxmox.clusterRef.name: ProxmoxCluster \"gone\" not found in \"net\""],
    );
    denied(
        review(&create(with(json!({"name": "pve", "namespace": "other"}))), &s),
        &["spec.provider.proxmox.clusterRef.namespace: must be empty or \"net\""],
    );
    let mut s2 = s.clone();
    s2.targets.insert("r5".into(), typed(with(json!({"name": "pve"}))));
    denied(
        review(&delete("ProxmoxCluster", "pve"), &s2),
        &["VRouterTarget \"r5\" uses it in spec.provider.proxmox.clusterRef"],
    );
}

#[test]
fn inconsistent_provider_fields_are_denied() {
    let t = obj(
        "VRouterTarget",
        "r5",
        json!({"provider": {"type": "kubevirt", "libvirt": {"socket": "relative"}}, "delivery": {"commitConfirm": {"timeoutMinutes": 0}}}),
    );
    denied(
        review(&create(t), &snapshot()),
        &[
            "spec.provider.kubevirt: required when type is kubevirt",
            "spec.provider.libvirt: set, but type is",
            "spec.provider.libvirt.socket: must be an absolute path",
            "spec.delivery.commitConfirm.timeoutMinutes",
        ],
    );
}

#[test]
fn a_target_change_that_breaks_its_bindings_is_denied() {
    // Target params override the binding's: a non-number still renders, but a template that
    // needs a target param fails without it.
    let mut s = snapshot();
    s.templates.insert(
        "site".into(),
        typed(obj("VRouterTemplate", "site", json!({"commands": "set system domain-name '{{ domain }}'\n"}))),
    );
    s.bindings.insert(
        "sites".into(),
        typed(obj(
            "VRouterBinding",
            "sites",
            json!({"templateRefs": [{"name": "site"}], "targetSelector": {"matchLabels": {"site": "yes"}}}),
        )),
    );
    let mut t = obj("VRouterTarget", "r7", json!({}));
    t["metadata"]["labels"] = json!({"site": "yes"});
    denied(
        review(&create(t.clone()), &s),
        &["VRouterBinding \"sites\", target \"r7\", would fail with this target", "domain"],
    );
    t["spec"]["params"] = json!({"domain": "example.net"});
    allowed(review(&create(t), &s));
}

#[test]
fn configs_need_their_target_and_parseable_content() {
    let s = snapshot();
    let cfg = |spec: Value| obj("VRouterConfig", "c", spec);
    allowed(review(&create(cfg(json!({"targetRef": {"name": "r1"}, "commands": "set system time-zone 'UTC'\n"}))), &s));
    allowed(review(
        &create(cfg(json!({"targetRef": {"name": "r1"}, "config": "system {\n    time-zone UTC\n}\n"}))),
        &s,
    ));
    denied(
        review(&create(cfg(json!({"targetRef": {"name": "r9"}, "commands": "set system time-zone 'UTC'\n"}))), &s),
        &["spec.targetRef.name: VRouterTarget \"r9\" not found in \"net\""],
    );
    denied(
        review(&create(cfg(json!({"targetRef": {"name": "r1"}, "commands": "sett system\n"}))), &s),
        &["spec.commands:"],
    );
    denied(review(&create(cfg(json!({"targetRef": {"name": "r1"}, "config": "system {\n"}))), &s), &["spec.config:"]);
    denied(
        review(
            &create(cfg(
                json!({"targetRef": {"name": "r1", "namespace": "x"}, "commands": "set system time-zone 'UTC'\n"}),
            )),
            &s,
        ),
        &["spec.targetRef.namespace"],
    );
}

#[test]
fn proxmox_clusters_follow_the_shared_rules() {
    let p = obj("ProxmoxCluster", "pve2", json!({"endpoints": ["ftp://x"], "credentialsRef": {"name": "t"}}));
    denied(review(&create(p), &snapshot()), &["spec.endpoints[0]: \"ftp://x\" is not an http(s) URL"]);
}

#[test]
fn objects_being_deleted_are_not_checked_and_unreadable_ones_are_denied() {
    let mut b =
        obj("VRouterBinding", "core", json!({"templateRefs": [{"name": "gone"}], "targetRefs": [{"name": "r1"}]}));
    b["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    allowed(review(&request("VRouterBinding", Operation::Update, Some(b.clone())), &snapshot()));
    // A create is checked whatever its metadata says.
    assert!(!review(&create(b), &snapshot()).allowed);
    let bad = obj("VRouterTarget", "r1", json!({"paused": "yes please"}));
    denied(review(&create(bad), &snapshot()), &["VRouterTarget: cannot read the object"]);
    denied(review(&request("VRouterTarget", Operation::Create, None), &snapshot()), &["no object"]);
}

#[test]
fn other_kinds_and_connect_are_allowed() {
    allowed(review(&create(obj("Widget", "w", json!({}))), &snapshot()));
    allowed(review(&request("VRouterTarget", Operation::Connect, None), &snapshot()));
}

#[test]
fn each_review_reads_only_what_its_rules_need() {
    let n = Needs::of;
    assert_eq!(n("VRouterTarget", Operation::Delete), Needs { bindings: true, configs: true, ..Needs::default() });
    assert_eq!(n("VRouterConfig", Operation::Create), Needs { targets: true, ..Needs::default() });
    assert_eq!(n("VRouterConfig", Operation::Delete), Needs::default());
    assert_eq!(
        n("VRouterBinding", Operation::Update),
        Needs { templates: true, params: true, targets: true, ..Needs::default() }
    );
    assert!(n("VRouterTemplate", Operation::Update).bindings);
    assert!(n("VRouterTarget", Operation::Create).proxmox_clusters);
    assert_eq!(n("ProxmoxCluster", Operation::Delete), Needs { targets: true, ..Needs::default() });
    assert_eq!(n("ProxmoxCluster", Operation::Create), Needs::default());
    assert_eq!(n("VRouterParams", Operation::Delete), Needs { bindings: true, ..Needs::default() });
    // Narrowed to single objects where the rules name them.
    let t = obj(
        "VRouterTarget",
        "r5",
        json!({"provider": {"type": "proxmox", "proxmox": {"vmid": 100, "clusterRef": {"name": "pve"}}}}),
    );
    let needs = Needs::for_request(&create(t));
    assert_eq!(needs.proxmox_cluster.as_deref(), Some("pve"));
    assert!(!needs.proxmox_clusters && needs.bindings && needs.targets);
    let needs = Needs::for_request(&create(target_obj("r6")));
    assert_eq!(needs.proxmox_cluster, None);
}
