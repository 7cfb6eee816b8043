//! Planning an apply: from the running config, the desired config and the policy, the target
//! configuration and the commands that reach it.
//!
//! - **Replace**: the target is the desired tree plus the protected configuration.
//! - **Merge**: the target is the running config with (1) everything that left the desired
//!   state since the previous applied revision removed, (2) each managed scope replaced by the
//!   desired tree's version of it (or removed when the desired tree has none), (3) the desired
//!   tree merged on top (single-value leaves replaced, multi-value leaves unioned), (4) the
//!   protected configuration merged on top. Nothing else on the router is touched.
//!
//! The protected configuration (an agent-local file: the management interface, its route, the
//! agent's own firewall hole) always wins, so no pushed config can cut the agent off; the
//! protected leaves are listed in the plan.
//!
//! Before anything is compared, the desired and previous trees are conformed to the running
//! config ([`Tree::conform_to`]) so command-written values and tag flags match the router's.

use crate::apply::resolve_value;
use crate::commands::{Command, Op};
use crate::diff::{Diff, diff, tree_commands};
use crate::merge::merge;
use crate::schema::Schema;
use crate::tree::{Path, Tree};

/// How the desired configuration relates to the rest of the router's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Merge into the running config; remove only what left the desired state.
    #[default]
    Merge,
    /// The running config becomes exactly the desired config (plus protected paths).
    Replace,
}

/// Everything a plan depends on.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    /// The router's running configuration.
    pub running: &'a Tree,
    /// The desired configuration.
    pub desired: &'a Tree,
    /// The desired configuration of the previous applied revision, if known (Merge removals).
    pub previous: Option<&'a Tree>,
    /// Merge or Replace.
    pub policy: Policy,
    /// Under Merge, subtrees owned entirely by the desired configuration.
    pub managed_scopes: &'a [Path],
    /// Under Merge, explicit `delete` commands of the desired state, applied to the running
    /// config (where the path or value exists) before the desired config is merged.
    pub deletions: &'a [Command],
    /// Configuration that always wins (from the agent's local protected-paths file).
    pub protected: &'a Tree,
    /// Tag and multi-value hints.
    pub schema: &'a Schema,
}

/// The outcome of planning.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The configuration the router should have afterwards.
    pub target: Tree,
    /// The diff from the running config to the target.
    pub diff: Diff,
    /// The commands to run, deletes first.
    pub commands: Vec<Command>,
    /// Protected leaves re-asserted on top of the desired configuration.
    pub protected_paths: Vec<Path>,
}

impl Plan {
    /// Whether nothing needs to change.
    pub fn is_noop(&self) -> bool {
        self.commands.is_empty()
    }
}

/// Computes the target configuration and the commands.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let mut desired = input.desired.clone();
    desired.conform_to(input.running);
    let mut target = match input.policy {
        Policy::Replace => desired.clone(),
        Policy::Merge => merge_target(&input, &desired),
    };
    merge(&mut target, input.protected, input.schema);
    target.conform_to(input.running);
    let protected_paths: Vec<Path> =
        input.protected.leaves().into_iter().map(|(p, _)| p.iter().map(|s| (*s).to_owned()).collect()).collect();
    let diff = diff(input.running, &target);
    let commands = diff.commands();
    Plan { target, diff, commands, protected_paths }
}

fn merge_target(input: &PlanInput<'_>, desired: &Tree) -> Tree {
    let mut target = input.running.clone();
    if let Some(previous) = input.previous {
        let mut previous = previous.clone();
        previous.conform_to(input.running);
        // What the previous revision had and the desired one does not: delete it where it is
        // still there (a human may have removed it already).
        let removed = diff(&previous, desired);
        for cmd in tree_commands(&removed.del, Op::Delete) {
            let exists = match &cmd.value {
                Some(v) => target.values(&cmd.path).iter().any(|x| x == v),
                None => target.exists(&cmd.path),
            };
            if exists {
                // Present, so the delete cannot fail.
                let _ = target.delete(&cmd.path, cmd.value.as_deref());
            }
        }
    }
    for cmd in input.deletions.iter().filter(|c| c.op == Op::Delete) {
        let (path, value) = resolve_value(&target, cmd);
        let exists = match value {
            Some(v) => target.values(path).iter().any(|x| x == v),
            None => target.exists(path),
        };
        if exists {
            let (path, value) = (path.to_vec(), value.map(str::to_owned));
            // Present, so the delete cannot fail.
            let _ = target.delete(&path, value.as_deref());
        }
    }
    for scope in input.managed_scopes {
        if scope.is_empty() {
            continue;
        }
        target = target.without(std::slice::from_ref(scope));
        if let Some(node) = desired.get(scope) {
            target.insert_subtree(&scope[..scope.len() - 1], node.clone());
        }
    }
    merge(&mut target, desired, input.schema);
    target
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_tree;

    fn t(s: &str) -> Tree {
        parse_tree(s).unwrap()
    }

    fn lines(p: &Plan) -> Vec<String> {
        p.commands.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn replace_makes_running_equal_desired() {
        let running = t("system {\n    host-name vyos\n    login {\n        user vyos\n    }\n}\n");
        let desired = t("system {\n    host-name r1\n}\n");
        let p = plan(PlanInput {
            running: &running,
            desired: &desired,
            previous: None,
            policy: Policy::Replace,
            managed_scopes: &[],
            deletions: &[],
            protected: &Tree::new(),
            schema: Schema::vyos(),
        });
        assert_eq!(lines(&p), ["delete system host-name 'vyos'", "delete system login", "set system host-name 'r1'"]);
    }

    #[test]
    fn merge_leaves_unmanaged_config_alone_and_removes_what_left() {
        let running = t(
            "system {\n    host-name vyos\n    login {\n        user vyos\n    }\n    ntp {\n        server a\n    }\n}\n",
        );
        let previous = t("system {\n    ntp {\n        server a\n    }\n}\n");
        let desired = t("system {\n    host-name r1\n}\n");
        let p = plan(PlanInput {
            running: &running,
            desired: &desired,
            previous: Some(&previous),
            policy: Policy::Merge,
            managed_scopes: &[],
            deletions: &[],
            protected: &Tree::new(),
            schema: Schema::vyos(),
        });
        assert_eq!(lines(&p), ["delete system host-name 'vyos'", "delete system ntp", "set system host-name 'r1'"]);
        assert_eq!(p.target.values(&["system", "login", "user"]), ["vyos"]);
    }

    #[test]
    fn merge_applies_explicit_deletions_before_the_desired_config() {
        let running = t(
            "interfaces {\n    ethernet eth1 {\n        address 10.0.0.1/24\n        address 10.0.1.1/24\n        mtu 9000\n    }\n}\nsystem {\n    host-name vyos\n}\n",
        );
        let desired = t("interfaces {\n    ethernet eth1 {\n        mtu 1500\n    }\n}\n");
        let deletions = crate::commands::parse_commands(
            "delete interfaces ethernet eth1 address 10.0.1.1/24\ndelete system host-name\ndelete protocols bgp\nset system ntp",
        )
        .unwrap();
        let input = PlanInput {
            running: &running,
            desired: &desired,
            previous: None,
            policy: Policy::Merge,
            managed_scopes: &[],
            deletions: &deletions,
            protected: &Tree::new(),
            schema: Schema::vyos(),
        };
        let p = plan(input);
        // Absent paths and non-delete commands are ignored; the desired config still wins.
        assert_eq!(
            lines(&p),
            [
                "delete interfaces ethernet eth1 address '10.0.1.1/24'",
                "delete interfaces ethernet eth1 mtu '9000'",
                "delete system host-name",
                "set interfaces ethernet eth1 mtu '1500'"
            ]
        );
        // Replace ignores deletions: the desired config is the whole truth anyway.
        let p = plan(PlanInput { policy: Policy::Replace, ..input });
        assert!(!p.target.exists(&["system"]));
    }

    #[test]
    fn managed_scope_is_replaced_whole() {
        let running =
            t("protocols {\n    static {\n        route a {\n        }\n        route b {\n        }\n    }\n}\n");
        let desired = t("protocols {\n    static {\n        route a {\n        }\n    }\n}\n");
        let scopes = vec![vec!["protocols".to_owned(), "static".to_owned()]];
        let p = plan(PlanInput {
            running: &running,
            desired: &desired,
            previous: None,
            policy: Policy::Merge,
            managed_scopes: &scopes,
            deletions: &[],
            protected: &Tree::new(),
            schema: Schema::vyos(),
        });
        assert_eq!(lines(&p), ["delete protocols static route b"]);
    }

    #[test]
    fn protected_always_wins() {
        let running = t("interfaces {\n    ethernet eth0 {\n        address 192.168.1.10/24\n    }\n}\n");
        let desired = t("interfaces {\n    ethernet eth0 {\n        address 10.0.0.1/24\n    }\n}\n");
        let protected = running.clone();
        let p = plan(PlanInput {
            running: &running,
            desired: &desired,
            previous: None,
            policy: Policy::Replace,
            managed_scopes: &[],
            deletions: &[],
            protected: &protected,
            schema: Schema::vyos(),
        });
        // The management address stays; the new address is added (address is multi-valued).
        assert_eq!(lines(&p), ["set interfaces ethernet eth0 address '10.0.0.1/24'"]);
        assert_eq!(p.protected_paths, [vec!["interfaces", "ethernet", "eth0", "address"]]);
    }

    #[test]
    fn command_written_values_match_running() {
        let running = t("system {\n    host-name r1\n}\n");
        let desired = crate::Config::parse("set system host-name r1\n").unwrap().tree;
        let p = plan(PlanInput {
            running: &running,
            desired: &desired,
            previous: None,
            policy: Policy::Replace,
            managed_scopes: &[],
            deletions: &[],
            protected: &Tree::new(),
            schema: Schema::vyos(),
        });
        assert!(p.is_noop(), "{:?}", lines(&p));
    }
}
