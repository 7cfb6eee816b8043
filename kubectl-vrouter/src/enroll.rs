//! `kubectl vrouter enroll TARGET`: an `agent.toml` with a fresh single-use enrollment token for
//! a router the operator cannot bootstrap (bare metal).
//!
//! The plugin never holds the operator's PKI. It asks through the API: it annotates the
//! VRouterTarget with a random request id, the operator's target controller issues a token into
//! the Secret `vrouter-enroll-<target>` (see `vrouter_operator::controller::enroll`), and the
//! plugin reads the Secret carrying its request id, deletes it, and prints the configuration.

use std::path::{Path, PathBuf};

use kube::Client;
use serde::Serialize;
use vrouter_operator::controller::enroll::{
    ANNOTATION_ENROLL_REQUEST, KEY_CA, KEY_ENDPOINT, KEY_IDENTITY, KEY_SERVER_NAME, KEY_TOKEN, secret_name,
    secret_value,
};
use vrouter_operator::qga::guest::{AGENT_DIR, BootstrapSettings, GuestLayout, agent_config};

use crate::Error;
use crate::fetch;
use crate::request::{self, Wait};

/// How to enroll.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The agent endpoint the router dials; default: the one the operator advertises.
    pub endpoint: Option<String>,
    /// The TLS server name the agent expects, when it differs from the endpoint's host.
    pub server_name: Option<String>,
    /// How long to wait for the operator, and how often to look.
    pub wait: Wait,
}

/// A router's enrollment.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    /// `<namespace>/<name>`.
    pub identity: String,
    /// The request id the operator answered.
    pub request_id: String,
    /// The agent endpoint in the configuration.
    pub endpoint: String,
    /// The TLS server name, if set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The single-use token.
    pub token: String,
    /// The operator's CA (PEM).
    pub ca_pem: String,
    /// Where `agent.toml` expects the CA on the router.
    pub ca_file: String,
    /// The complete `agent.toml`.
    pub agent_toml: String,
}

/// A fresh random request id (16 hex digits).
pub fn new_request_id() -> String {
    request::new_request_id()
}

/// Asks the operator for a token for `target` and builds the agent's configuration. The Secret
/// is deleted before this returns.
pub async fn enroll(client: &Client, ns: &str, target: &str, options: &Options) -> Result<Enrollment, Error> {
    let id = format!("{ns}/{target}");
    let fail = |message: String| Error::Enroll { target: id.clone(), message };
    if let Some(e) = &options.endpoint {
        check_endpoint(e).map_err(fail)?;
    }
    fetch::target(client, ns, target).await?;
    let sname = secret_name(target);
    let asked = request::ask(client, ns, target, ANNOTATION_ENROLL_REQUEST, &sname, options.wait).await?;
    let Some(secret) = asked.secret else {
        return Err(fail(format!(
            "no answer from the operator after {}s (Secret {sname} with request id {}); is the operator running and watching namespace {ns}? The request was withdrawn",
            options.wait.timeout.as_secs(),
            asked.request
        )));
    };
    let request = asked.request;
    let value = |key: &str| secret_value(&secret, key).map(str::to_owned);
    // Whatever follows, the token must not stay in the cluster.
    request::delete(client, ns, &sname).await?;
    let token =
        value(KEY_TOKEN).filter(|t| !t.is_empty()).ok_or_else(|| fail(format!("Secret {sname} has no {KEY_TOKEN}")))?;
    let ca_pem =
        value(KEY_CA).filter(|c| !c.is_empty()).ok_or_else(|| fail(format!("Secret {sname} has no {KEY_CA}")))?;
    if let Some(identity) = value(KEY_IDENTITY)
        && identity != id
    {
        return Err(fail(format!("Secret {sname} is for {identity:?}, not {id}")));
    }
    let endpoint = options.endpoint.clone().or_else(|| value(KEY_ENDPOINT)).ok_or_else(|| {
        fail("the operator advertises no agent endpoint: pass --endpoint https://HOST:PORT (the address routers dial); the token issued is unused and expires".to_owned())
    })?;
    check_endpoint(&endpoint).map_err(|e| fail(format!("Secret {sname}: {e}")))?;
    let server_name = options.server_name.clone().or_else(|| value(KEY_SERVER_NAME));
    let settings = BootstrapSettings {
        endpoint: endpoint.clone(),
        server_name: server_name.clone(),
        ca_pem: ca_pem.clone(),
        layout: GuestLayout::default(),
        ..BootstrapSettings::default()
    };
    let agent_toml = agent_config(&id, &settings, &token).map_err(|e| fail(format!("agent.toml: {e}")))?;
    Ok(Enrollment {
        identity: id.clone(),
        request_id: request,
        endpoint,
        server_name,
        token,
        ca_pem,
        ca_file: settings.layout.ca_file(),
        agent_toml,
    })
}

/// An endpoint the agent accepts: `https://HOST[:PORT]`.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    match endpoint.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with(':') && !rest.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!("agent endpoint {endpoint:?} is not https://HOST[:PORT]")),
    }
}

/// The table (text) form: `agent.toml`, then the CA as a comment block to save next to it.
pub fn text(e: &Enrollment) -> String {
    let mut out = format!(
        "# agent.toml for {} (enrollment request {}): save as {AGENT_DIR}/agent.toml, mode 0600.\n\
         # The token is single-use and expires (24h by default). Save the operator's CA below,\n\
         # without the leading \"# \", as {}.\n",
        e.identity, e.request_id, e.ca_file
    );
    out.push_str(&e.agent_toml);
    if !e.agent_toml.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("# --- {} ---\n", e.ca_file));
    for line in e.ca_pem.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes `agent.toml` (mode 0600: it holds the token) and the CA (named as on the router)
/// into `dir`; returns both paths.
pub fn write_files(e: &Enrollment, dir: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let config = dir.join("agent.toml");
    let ca_name = Path::new(&e.ca_file).file_name().map(ToOwned::to_owned).unwrap_or_else(|| "ca.pem".into());
    let ca = dir.join(ca_name);
    fn io(p: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |err| Error::Output(format!("{}: {err}", p.display()))
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&config).map_err(io(&config))?;
    // An existing file keeps its mode on open: make it private before the token goes in.
    #[cfg(unix)]
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(io(&config))?;
    std::io::Write::write_all(&mut f, e.agent_toml.as_bytes()).map_err(io(&config))?;
    std::fs::write(&ca, &e.ca_pem).map_err(io(&ca))?;
    Ok((config, ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrollment() -> Enrollment {
        Enrollment {
            identity: "edge/b1".into(),
            request_id: "0123456789abcdef".into(),
            endpoint: "https://op:7443".into(),
            server_name: None,
            token: "vrt1.x".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            ca_file: "/config/vrouter-agent/operator-ca.pem".into(),
            agent_toml: "identity = \"edge/b1\"\n".into(),
        }
    }

    #[test]
    fn request_ids_are_fresh_and_acceptable_to_the_operator() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(vrouter_operator::controller::enroll::valid_request_id(&a));
    }

    #[test]
    fn endpoints_must_be_https_with_a_host() {
        assert!(check_endpoint("https://vrouter.example.net:7443").is_ok());
        assert!(check_endpoint("https://10.0.0.1").is_ok());
        for bad in ["http://x:1", "x:1", "https://", "https://:7443", "https://a b"] {
            assert!(check_endpoint(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn text_has_the_config_then_the_ca_as_comments() {
        let t = text(&enrollment());
        assert!(t.contains("\nidentity = \"edge/b1\"\n# --- /config/vrouter-agent/operator-ca.pem ---\n"), "{t}");
        assert!(t.ends_with("# -----BEGIN CERTIFICATE-----\n# AAAA\n# -----END CERTIFICATE-----\n"), "{t}");
    }

    #[test]
    fn files_are_written_next_to_each_other_and_the_config_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let (config, ca) = write_files(&enrollment(), &dir.path().join("b1")).unwrap();
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "identity = \"edge/b1\"\n");
        assert_eq!(ca, dir.path().join("b1/operator-ca.pem"));
        assert!(std::fs::read_to_string(&ca).unwrap().contains("AAAA"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
