//! `vtysh -c '…'`: FRR's shell, for the few read-only commands an agent reports from.
//!
//! `show bgp summary json` (also `show ip bgp summary json`) is built from the running
//! configuration's `protocols bgp` neighbours, with the session state set by
//! `fakevyos ctl ROOT bgp-state [PEER] STATE` (default `Idle`). `show ip route json` and
//! `show ipv6 route json` print `{}`.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use vyos_config::Tree;

use crate::ctx::Ctx;
use crate::error::{Output, Result};
use crate::state;

/// The FRR address-family key of a neighbour's session.
fn families(tree: &Tree, peer: &str) -> Vec<&'static str> {
    let base = ["protocols", "bgp", "neighbor", peer, "address-family"];
    let mut out = Vec::new();
    if tree.exists(&[&base[..], &["ipv4-unicast"]].concat()) {
        out.push("ipv4Unicast");
    }
    if tree.exists(&[&base[..], &["ipv6-unicast"]].concat()) {
        out.push("ipv6Unicast");
    }
    if out.is_empty() {
        out.push(if peer.contains(':') { "ipv6Unicast" } else { "ipv4Unicast" });
    }
    out
}

/// `show bgp summary json` for a running configuration and per-peer states.
pub fn bgp_summary(tree: &Tree, states: &BTreeMap<String, String>) -> Value {
    let Some(bgp) = tree.get(&["protocols", "bgp"]) else {
        return json!({});
    };
    let local_as: u64 =
        tree.values(&["protocols", "bgp", "system-as"]).first().and_then(|v| v.parse().ok()).unwrap_or(0);
    let router_id = tree
        .values(&["protocols", "bgp", "parameters", "router-id"])
        .first()
        .cloned()
        .unwrap_or_else(|| "0.0.0.0".to_owned());
    let default_state = states.get("*").cloned().unwrap_or_else(|| "Idle".to_owned());
    let mut afs: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    for neighbor in bgp.child("neighbor").map(|n| n.children()).unwrap_or_default() {
        let peer = neighbor.name();
        let path = ["protocols", "bgp", "neighbor", peer];
        let remote = tree.values(&[&path[..], &["remote-as"]].concat()).first().cloned().unwrap_or_default();
        let remote_as: Value = remote.parse::<u64>().map(Value::from).unwrap_or(Value::from(remote.clone()));
        let shutdown = tree.exists(&[&path[..], &["shutdown"]].concat());
        let state = if shutdown {
            "Idle (Admin)".to_owned()
        } else {
            states.get(peer).cloned().unwrap_or(default_state.clone())
        };
        let established = state == "Established";
        let mut entry = json!({
            "remoteAs": remote_as,
            "localAs": local_as,
            "version": 4,
            "msgRcvd": if established { 10 } else { 0 },
            "msgSent": if established { 10 } else { 0 },
            "tableVersion": 0,
            "outq": 0,
            "inq": 0,
            "peerUptime": if established { "00:01:00" } else { "never" },
            "peerUptimeMsec": if established { 60000 } else { 0 },
            "pfxRcd": 0,
            "pfxSnt": 0,
            "state": state,
            "peerState": if shutdown { "Admin" } else { "OK" },
            "connectionsEstablished": u32::from(established),
            "connectionsDropped": 0,
            "idType": if peer.contains(':') { "ipv6" } else { "ipv4" },
        });
        if let Some(desc) = tree.values(&[&path[..], &["description"]].concat()).first()
            && let Some(map) = entry.as_object_mut()
        {
            map.insert("desc".to_owned(), Value::from(desc.clone()));
        }
        for af in families(tree, peer) {
            afs.entry(af).or_default().insert(peer.to_owned(), entry.clone());
        }
    }
    let mut out = serde_json::Map::new();
    for (af, peers) in afs {
        let total = peers.len();
        let failed = peers.values().filter(|p| p["state"] != "Established").count();
        out.insert(
            af.to_owned(),
            json!({
                "routerId": router_id,
                "as": local_as,
                "vrfId": 0,
                "vrfName": "default",
                "tableVersion": 0,
                "ribCount": 0,
                "ribMemory": 0,
                "peerCount": total,
                "peerMemory": 0,
                "peers": peers,
                "failedPeers": failed,
                "displayedPeers": total,
                "totalPeers": total,
                "dynamicPeers": 0,
                "bestPath": {"multiPathRelax": "false"},
            }),
        );
    }
    Value::Object(out)
}

/// `vtysh -c CMD [-c CMD…]`.
pub fn run(ctx: &Ctx, args: &[String]) -> Result<Output> {
    crate::timers::prelude(&ctx.root)?;
    let mut commands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-c" | "--command" => {
                i += 1;
                match args.get(i) {
                    Some(cmd) => commands.push(cmd.clone()),
                    None => {
                        return Ok(Output {
                            code: 1,
                            stderr: "vtysh: option requires an argument -- 'c'\n".into(),
                            ..Output::default()
                        });
                    }
                }
            }
            other => {
                return Ok(Output {
                    code: 1,
                    stderr: format!("fakevyos vtysh: unsupported argument {other:?}\n"),
                    ..Output::default()
                });
            }
        }
        i += 1;
    }
    let (tree, states) = {
        let locked = state::lock(&ctx.root)?;
        (state::read_active(&ctx.root)?, locked.state.bgp_state.clone())
    };
    let mut out = String::new();
    for command in commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["show", "bgp", "summary", "json"] | ["show", "ip", "bgp", "summary", "json"] => {
                out.push_str(&serde_json::to_string_pretty(&bgp_summary(&tree, &states)).unwrap_or_default());
                out.push('\n');
            }
            ["show", "ip", "route", "json"] | ["show", "ipv6", "route", "json"] => out.push_str("{}\n"),
            _ => return Ok(Output::fail(format!("{out}% Unknown command: {command}\n"))),
        }
    }
    Ok(Output::ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vyos_config::parse_tree;

    #[test]
    fn summary_from_config() {
        let t = parse_tree(
            "protocols {\n    bgp {\n        neighbor 192.0.2.2 {\n            remote-as \"65002\"\n        }\n        \
             neighbor 2001:db8::2 {\n            address-family {\n                ipv6-unicast {\n                }\n            }\n            remote-as \"external\"\n        }\n        \
             system-as \"65001\"\n    }\n}\n",
        )
        .unwrap();
        let mut states = BTreeMap::new();
        states.insert("192.0.2.2".to_owned(), "Established".to_owned());
        let v = bgp_summary(&t, &states);
        assert_eq!(v["ipv4Unicast"]["as"], 65001);
        assert_eq!(v["ipv4Unicast"]["peers"]["192.0.2.2"]["state"], "Established");
        assert_eq!(v["ipv4Unicast"]["peers"]["192.0.2.2"]["remoteAs"], 65002);
        assert_eq!(v["ipv4Unicast"]["failedPeers"], 0);
        assert_eq!(v["ipv6Unicast"]["peers"]["2001:db8::2"]["state"], "Idle");
        assert_eq!(v["ipv6Unicast"]["peers"]["2001:db8::2"]["remoteAs"], "external");
        assert_eq!(bgp_summary(&Tree::new(), &states), json!({}));
    }
}
