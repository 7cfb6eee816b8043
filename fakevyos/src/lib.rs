//! `fakevyos`: a test double of a VyOS router's configuration machinery, as one multi-call
//! binary installed into a fake root filesystem.
//!
//! It reproduces what an agent driving VyOS the way `vyos.configsession.ConfigSession` does
//! depends on: config sessions (`cli-shell-api`, `my_set`, `my_delete`, `my_comment`,
//! `my_discard`), commits with the commit lock, partial failures, the archive and post-commit
//! hooks (`my_commit`), commit-confirm on a controllable clock (`config-mgmt`), showing,
//! saving and loading configurations, version profiles, boot gating, `vtysh` summaries and a
//! keepalived daemon answering its JSON-dump signal.
//! All state is on disk under the root; every invocation is its own process.
//! docs/fakevyos.md describes the layout, the commands and the deviations from VyOS.

pub mod archive;
pub mod commit;
pub mod confirm;
pub mod ctl;
pub mod ctx;
pub mod dispatch;
pub mod edit;
pub mod error;
pub mod files;
pub mod install;
pub mod keepalived;
pub mod layout;
pub mod profile;
pub mod save;
pub mod schema;
pub mod session;
pub mod shell_api;
pub mod show;
pub mod state;
pub mod timers;
pub mod vtysh;
