//! A no-change apply writes nothing.

#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use vrouter_agent::apply::{Applier, Reachability};
use vrouter_agent::backend::sim::SimBackend;
use vrouter_agent::config::{ApplyConfig, SimConfig};
use vrouter_agent::state::StateFile;
use vrouter_proto::v1::{ApplyOutcome, ApplyRequest, ConfigPolicy, Revision};

struct Always;

#[async_trait]
impl Reachability for Always {
    async fn prove(&self, _: std::time::Duration) -> bool {
        true
    }
}

fn mtimes(dir: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.push((entry.display().to_string(), std::fs::metadata(&entry).unwrap().modified().unwrap()));
    }
    out.sort();
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[tokio::test]
async fn forced_no_change_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimBackend::open(tmp.path(), &SimConfig::default()).unwrap();
    let applier = Applier::new(
        Arc::new(sim),
        StateFile::new(tmp.path()),
        ApplyConfig { commit_confirm: false, ..ApplyConfig::default() },
        Default::default(),
    );
    let desired = "system {\n    host-name edge\n}\n";
    let tree = vyos_config::Config::parse(desired).unwrap().tree;
    let request = ApplyRequest {
        revision: Some(Revision { id: "r1".into(), digest: vyos_config::digest(&tree).to_string() }),
        desired_config: desired.into(),
        policy: ConfigPolicy::Replace as i32,
        save: true,
        ..Default::default()
    };
    let progress = |_| {};
    let r = applier.apply(request.clone(), &progress, &Always).await;
    assert_eq!(r.outcome, ApplyOutcome::Applied as i32, "{r:?}");
    let before = mtimes(tmp.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut forced = request.clone();
    forced.force = true;
    let r = applier.apply(forced, &progress, &Always).await;
    assert_eq!(r.outcome, ApplyOutcome::NoChange as i32, "{r:?}");
    assert!(r.commands.is_empty(), "{:?}", r.commands);
    assert_eq!(mtimes(tmp.path()), before, "a no-change apply rewrote files");
}
