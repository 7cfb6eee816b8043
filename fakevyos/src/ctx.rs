//! What one invocation runs with: the fake root, its profile and the environment.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::layout::Root;
use crate::profile::Profile;
use crate::schema::Schema;
use crate::state;

/// One invocation of a tool.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The fake root.
    pub root: Root,
    /// The root's version profile.
    pub profile: Profile,
    /// The environment the tool was started with.
    pub env: BTreeMap<String, String>,
    /// The tool's name (`my_set`, `cli-shell-api`, …).
    pub tool: String,
}

impl Ctx {
    /// A context for a tool in a fake root, with an explicit environment.
    pub fn new(root: Root, tool: &str, env: BTreeMap<String, String>) -> Result<Ctx> {
        let profile = Profile::load(&root)?;
        Ok(Ctx { root, profile, env, tool: tool.to_owned() })
    }

    /// An environment variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// The reference schema of the root's family.
    pub fn schema(&self) -> Result<Schema> {
        Schema::for_family(self.profile.family).map_err(crate::error::Error::Corrupt)
    }

    /// On rolling-style profiles, records (once per tool and variable) that the session
    /// environment lacks `SESSION_PID` or `_OFR_CONFIGURE`, which rolling's ConfigSession sets.
    pub fn note_rolling_env(&self, locked: &mut state::Locked) -> Result<()> {
        if !self.profile.family.expects_session_pid() {
            return Ok(());
        }
        for var in ["SESSION_PID", "_OFR_CONFIGURE"] {
            if self.var(var).is_none() {
                let key = format!("{}:{var}", self.tool);
                if locked.state.env_warnings.insert(key) {
                    let details = format!("tool={} var={var}", self.tool);
                    state::record_event(&self.root, locked.state.clock, "missing-env", &details)?;
                }
            }
        }
        Ok(())
    }
}

/// The process environment as a map (variables that are not UTF-8 are skipped).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}
