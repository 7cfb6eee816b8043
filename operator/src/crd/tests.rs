use super::validate::{self, Problem};
use super::*;

fn fields(r: Result<(), Vec<Problem>>) -> Vec<String> {
    r.err().unwrap_or_default().into_iter().map(|p| p.field).collect()
}

#[test]
fn crds_have_the_predecessor_names() {
    let names: Vec<(String, Vec<String>)> = crds()
        .into_iter()
        .map(|c| (c.spec.names.plural.clone(), c.spec.names.short_names.clone().unwrap_or_default()))
        .collect();
    let want = [
        ("vroutertemplates", "vrtt"),
        ("vrouterparams", "vrtp"),
        ("vroutertargets", "vrt"),
        ("vrouterbindings", "vrb"),
        ("vrouterconfigs", "vrc"),
        ("proxmoxclusters", "pxc"),
    ];
    for ((plural, short), (p, s)) in names.iter().zip(want) {
        assert_eq!(plural, p);
        assert_eq!(short, &vec![s.to_string()]);
    }
    for c in crds() {
        assert_eq!(c.spec.group, GROUP);
        assert_eq!(c.spec.versions[0].name, VERSION);
    }
}

#[test]
fn crd_yaml_is_valid_yaml_and_carries_cel_rules() {
    let yaml = crds_yaml().unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    assert_eq!(docs.len(), 6);
    assert!(yaml.contains("x-kubernetes-validations"));
    assert!(yaml.contains("has(self.config) || has(self.commands)"));
    assert!(yaml.contains("x-kubernetes-preserve-unknown-fields"));
}

#[test]
fn chart_crds_match_the_rust_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/vrouter-operator/crds/crds.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == crds_yaml().unwrap(),
        "{} is out of date: run `cargo run -p vrouter-operator -- crds > charts/vrouter-operator/crds/crds.yaml`",
        path.display()
    );
}

#[test]
fn predecessor_manifests_deserialize_with_defaults() {
    let b: VRouterBinding = serde_saphyr::from_str(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterBinding\nmetadata: {name: b, namespace: n}\n\
         spec:\n  templateRef: {name: base}\n  templateRefs: [{name: bgp}]\n  targetRefs: [{name: r1}]\n  \
         params: {asn: 65001}\n  rollout: {mode: WaitForApplied, pollInterval: 5s}\n",
    )
    .unwrap();
    assert!(b.spec.save);
    assert_eq!(b.spec.priority, 0);
    let r = b.spec.rollout.as_ref().unwrap();
    assert_eq!(r.mode, RolloutMode::WaitForApplied);
    assert_eq!(r.max_unavailable, 1);
    assert!(r.halt_on_failure);
    assert_eq!(r.poll_interval.as_ref().unwrap().get().unwrap(), std::time::Duration::from_secs(5));

    let t: VRouterTarget = serde_saphyr::from_str(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {name: r1}\n\
         spec:\n  provider: {kubevirt: {name: vm1}}\n",
    )
    .unwrap();
    let p = t.spec.provider.as_ref().unwrap();
    assert_eq!(p.type_, ProviderType::Kubevirt);
    assert_eq!(t.spec.delivery.mode, DeliveryMode::Auto);
    assert!(t.spec.delivery.commit_confirm.enabled);
    assert_eq!(t.spec.delivery.commit_confirm.timeout_minutes, 2);
    assert_eq!(t.spec.config_policy, ConfigPolicy::Merge);
    assert_eq!(t.spec.drift_policy, DriftPolicy::Report);
    validate::target(&t.spec).unwrap();

    let c: VRouterConfig = serde_saphyr::from_str(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterConfig\nmetadata: {name: c}\n\
         spec: {targetRef: {name: r1}, commands: 'set system host-name r1'}\n",
    )
    .unwrap();
    assert!(c.spec.save);
    let q: VRouterTarget = serde_saphyr::from_str(
        "apiVersion: vrouter.kojuro.date/v1\nkind: VRouterTarget\nmetadata: {name: r1}\n\
         spec: {delivery: {mode: QGA}, configPolicy: Replace, driftPolicy: Correct}\n",
    )
    .unwrap();
    assert_eq!(q.spec.delivery.mode, DeliveryMode::Qga);
}

#[test]
fn binding_rules() {
    let mut b = VRouterBindingSpec { save: true, ..Default::default() };
    assert_eq!(fields(validate::binding(&b, "n")), ["spec.templateRefs", "spec.targetRefs"]);
    b.template_refs = vec![NameRef::new("t")];
    b.target_refs = vec![NameRef::new("a"), NameRef::new("a")];
    b.params_refs = vec![NameRef { namespace: Some("other".into()), name: "p".into() }];
    assert_eq!(fields(validate::binding(&b, "n")), ["spec.paramsRefs[0].namespace", "spec.targetRefs[1].name"]);
    b.params_refs = vec![NameRef { namespace: Some("n".into()), name: "p".into() }];
    b.target_refs = vec![NameRef::new("a"), NameRef::new("Bad_Name")];
    assert_eq!(fields(validate::binding(&b, "n")), ["spec.targetRefs[1].name"]);
    b.target_refs = vec![NameRef::new("a")];
    b.rollout = Some(RolloutSpec { mode: RolloutMode::FixedInterval, ..Default::default() });
    assert_eq!(fields(validate::binding(&b, "n")), ["spec.rollout.waitInterval"]);
    b.rollout = Some(RolloutSpec {
        mode: RolloutMode::FixedInterval,
        wait_interval: Some("0s".into()),
        poll_interval: Some("ten seconds".into()),
        max_unavailable: 0,
        ..Default::default()
    });
    assert_eq!(
        fields(validate::binding(&b, "n")),
        ["spec.rollout.maxUnavailable", "spec.rollout.pollInterval", "spec.rollout.waitInterval"]
    );
    b.rollout = Some(RolloutSpec { mode: RolloutMode::WaitForApplied, ..Default::default() });
    validate::binding(&b, "n").unwrap();
    b.target_refs.clear();
    b.target_selector = Some(Default::default());
    validate::binding(&b, "n").unwrap();
}

#[test]
fn target_rules() {
    let mut t = VRouterTargetSpec {
        provider: Some(ProviderSpec { type_: ProviderType::Proxmox, ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(fields(validate::target(&t)), ["spec.provider.proxmox"]);
    t.provider = Some(ProviderSpec {
        type_: ProviderType::Libvirt,
        libvirt: Some(LibvirtProvider { socket: "relative.sock".into() }),
        kubevirt: Some(KubevirtProvider { name: "vm".into(), namespace: None }),
        ..Default::default()
    });
    assert_eq!(fields(validate::target(&t)), ["spec.provider.kubevirt", "spec.provider.libvirt.socket"]);
    t.provider = None;
    t.managed_scopes = vec!["protocols bgp".into(), "  ".into(), "system 'x'".into()];
    t.delivery.apply_timeout = Some("-1s".into());
    assert_eq!(
        fields(validate::target(&t)),
        ["spec.delivery.applyTimeout", "spec.managedScopes[1]", "spec.managedScopes[2]"]
    );
}

#[test]
fn config_and_template_rules() {
    let c = VRouterConfigSpec {
        target_ref: NameRef::new(""),
        config: Some("x".repeat(MAX_TEXT_BYTES + 1)),
        ..Default::default()
    };
    let probs = validate::config(&c, "n").unwrap_err();
    assert_eq!(probs.iter().map(|p| p.field.as_str()).collect::<Vec<_>>(), ["spec.targetRef.name", "spec.config"]);
    assert!(validate::describe(&probs).contains("more than the limit"));
    assert_eq!(fields(validate::template(&VRouterTemplateSpec::default())), ["spec"]);
    validate::template(&VRouterTemplateSpec { commands: Some(String::new()), config: None }).unwrap();
}

#[test]
fn proxmox_rules() {
    let p = ProxmoxClusterSpec { endpoints: vec!["pve:8006".into()], ..Default::default() };
    assert_eq!(fields(validate::proxmox(&p)), ["spec.endpoints[0]", "spec.credentialsRef.name"]);
}

#[test]
fn names() {
    for ok in ["a", "a-b.c", "0", "x".repeat(253).as_str()] {
        validate::check_name(ok).unwrap();
    }
    for bad in ["", "A", "-a", "a-", "a..b", "a_b", &"x".repeat(254)] {
        assert!(validate::check_name(bad).is_err(), "{bad}");
    }
}
