//! A router's live running configuration, fetched through the operator (see
//! `vrouter_operator::controller::running`): the plugin asks with an annotation, the operator
//! fetches it over the agent stream into the Secret `vrouter-running-<target>`, the plugin reads
//! the Secret and deletes it (it holds secret values).

use vrouter_operator::controller::request::secret_value;
use vrouter_operator::controller::running::{
    ANNOTATION_RUNNING_REQUEST, KEY_APPLIED_CONFIG, KEY_CONFIG, KEY_DIGEST, KEY_ERROR, KEY_FETCHED_AT, KEY_REVISION,
    secret_name,
};

use kube::Client;

use crate::Error;
use crate::request::{self, Wait};

/// The running configuration the operator fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// The request id the operator answered.
    pub request_id: String,
    /// The configuration (hierarchical format, secret values included).
    pub config: String,
    /// The agent's digest of it.
    pub digest: String,
    /// When the operator fetched it (RFC 3339, as written by the operator).
    pub fetched_at: String,
    /// The applied revision the agent reported, if any.
    pub revision: Option<String>,
    /// The configuration the agent's own record holds as last applied (secret values
    /// included): what the next Merge removes paths of.
    pub applied_config: Option<String>,
}

/// Asks the operator for `target`'s running configuration and waits at most `wait.timeout`.
/// The Secret is deleted before this returns.
pub async fn running_config(client: &Client, ns: &str, target: &str, wait: Wait) -> Result<Running, Error> {
    let fail = |message: String| Error::Running { target: format!("{ns}/{target}"), message };
    let sname = secret_name(target);
    let asked = request::ask(client, ns, target, ANNOTATION_RUNNING_REQUEST, &sname, wait).await?;
    let Some(secret) = asked.secret else {
        return Err(fail(format!(
            "no answer from the operator after {}s (Secret {sname} with request id {}); is the operator running and watching namespace {ns}? The request was withdrawn; --from-applied plans from the last applied revision without the operator",
            wait.timeout.as_secs(),
            asked.request
        )));
    };
    let value = |key: &str| secret_value(&secret, key).map(str::to_owned);
    // It carries secret values: never left in the cluster.
    request::delete(client, ns, &sname).await?;
    if let Some(why) = value(KEY_ERROR) {
        return Err(fail(format!("{why} (--from-applied plans from the last applied revision instead)")));
    }
    let config = value(KEY_CONFIG).ok_or_else(|| fail(format!("Secret {sname} has no {KEY_CONFIG}")))?;
    Ok(Running {
        request_id: asked.request,
        config,
        digest: value(KEY_DIGEST).unwrap_or_default(),
        fetched_at: value(KEY_FETCHED_AT).unwrap_or_default(),
        revision: value(KEY_REVISION).filter(|r| !r.is_empty()),
        applied_config: value(KEY_APPLIED_CONFIG).filter(|c| !c.is_empty()),
    })
}
