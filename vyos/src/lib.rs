//! A model of VyOS configuration that behaves like VyOS's own config library.
//!
//! - Parse the hierarchical format ([`parse_tree`], [`Config::parse`] for whole files with a
//!   version footer) and command lists ([`parse_commands`]).
//! - Render both formats byte for byte as VyOS does ([`render_config`], [`render_commands`]).
//! - Edit with VyOS semantics ([`Tree::set`], [`Tree::delete`], [`apply_commands`], [`merge`]).
//! - Compare with VyOS's diff rules ([`diff`], [`diff_scoped`]) and plan an apply under the
//!   Merge or Replace policy ([`plan`]).
//! - Digest a configuration canonically ([`digest`]), the same for either input format.
//!
//! The crate does no I/O. docs/vyos-model.md describes the semantics and where they
//! deliberately differ from VyOS.

pub mod apply;
pub mod commands;
pub mod config;
pub mod diff;
pub mod digest;
pub mod escape;
pub mod merge;
pub mod natord;
pub mod parse;
pub mod plan;
pub mod render;
pub mod schema;
pub mod synthetic;
pub mod tree;

pub use apply::{ApplyError, ApplyReport, apply_commands};
pub use commands::{Command, CommandError, Op, parse_commands, render_command_list};
pub use config::{Config, Error, Format, detect_format, split_footer};
pub use diff::{ChangeKind, Diff, diff, diff_scoped};
pub use digest::{Digest, canonical_text, digest, digest_of_canonical};
pub use escape::{escape_controls, escape_controls_owned};
pub use merge::{Conflict, merge};
pub use parse::{ParseError, ParseErrorKind, parse_tree};
pub use plan::{Plan, PlanInput, Policy, plan};
pub use render::{RenderOptions, Verb, render_commands, render_config};
pub use schema::Schema;
pub use tree::{EditError, Node, Path, Tree, ValueBehaviour, path_from_str, path_to_string};
