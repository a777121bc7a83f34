//! A Bedrock deployment's AWS region and credentials, read the way LiteLLM and the AWS SDKs read
//! them: the deployment's fields first, then the standard environment.
//!
//! Envoy's `aws_request_signing` filter does the signing, so credentials become a choice of its
//! credential provider: the keys written in the config, the standard variables, STS AssumeRole
//! (`aws_role_name`), or, with nothing configured, Envoy's default chain (environment, credentials
//! and config files, web identity / IRSA, container and instance metadata).

use serde_json::{Map, Value};

use super::walker::{join, SecretRef, Walker};
use super::{Env, Strictness};
use crate::providers::AwsCredentials;

/// Where LiteLLM looks for the region when `aws_region_name` is absent, in its order, after the
/// region of a model ARN.
pub(crate) const REGION_ENV: [&str; 3] = ["AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION"];

/// Starts the warning `tollgate check` gives when it sees no credential source.
const NO_CREDENTIALS: &str = "no AWS credentials are visible here";

/// The deployment's region: `aws_region_name`, else the region of a model ARN
/// (`arn:aws:bedrock:<region>:...`), else the first of [`REGION_ENV`] that is set.
pub(crate) fn region(
    w: &mut Walker,
    lp: &Map<String, Value>,
    lp_path: &str,
    model_id: &str,
) -> Option<String> {
    // Envoy's cluster is built from it: an unset variable is an error where render runs too.
    if let Some(r) = w.cluster_string(lp, "aws_region_name", lp_path) {
        return Some(r);
    }
    if let Some(r) = arn_region(model_id) {
        return Some(r.to_string());
    }
    let mut found = None;
    for name in REGION_ENV {
        // The filter reads them too (its host_env_keys), so both agree on the endpoint.
        if !w.env_keys.iter().any(|k| k == name) {
            w.env_keys.push(name.to_string());
        }
        if found.is_none() {
            found = w.env.var(name).filter(|v| !v.trim().is_empty());
        }
    }
    found
}

/// The region of a Bedrock ARN model id (an inference profile, a provisioned or imported model).
fn arn_region(model_id: &str) -> Option<&str> {
    let id = model_id.strip_prefix("converse/").unwrap_or(model_id);
    let mut parts = id.strip_prefix("arn:")?.split(':');
    let (_partition, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "bedrock" && !region.is_empty()).then_some(region)
}

/// The credentials Envoy signs with, from `aws_access_key_id` / `aws_secret_access_key` /
/// `aws_session_token` and `aws_role_name` / `aws_session_name` / `aws_external_id`. `None` after
/// an error (reported).
pub(crate) fn credentials(
    w: &mut Walker,
    lp: &Map<String, Value>,
    lp_path: &str,
) -> Option<AwsCredentials> {
    let keys = keys(w, lp, lp_path)?;
    let Some(role_arn) = w.string(lp, "aws_role_name", lp_path) else {
        for field in ["aws_session_name", "aws_external_id"] {
            if lp.get(field).is_some_and(|v| !v.is_null()) {
                w.warn(
                    &join(lp_path, field),
                    "is used only with aws_role_name, which is not set; it is ignored",
                );
            }
        }
        return Some(keys);
    };
    if !role_arn.starts_with("arn:") {
        w.error(
            &join(lp_path, "aws_role_name"),
            format!("'{role_arn}' is not a role ARN (arn:aws:iam::<account>:role/<name>)"),
        );
        return None;
    }
    let session_name = w.string(lp, "aws_session_name", lp_path);
    if let Some(s) = &session_name {
        // STS's RoleSessionName: 2 to 64 of [\w+=,.@-].
        let ok = (2..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
        if !ok {
            w.error(
                &join(lp_path, "aws_session_name"),
                format!("'{s}' is not an STS session name (2 to 64 letters, digits or _+=,.@-)"),
            );
            return None;
        }
    }
    let external_id = w.string(lp, "aws_external_id", lp_path);
    Some(AwsCredentials::AssumeRole {
        role_arn,
        session_name,
        external_id,
        source: Box::new(keys),
    })
}

fn keys(w: &mut Walker, lp: &Map<String, Value>, lp_path: &str) -> Option<AwsCredentials> {
    let id = w.secret_ref(lp, "aws_access_key_id", lp_path);
    let secret = w.secret_ref(lp, "aws_secret_access_key", lp_path);
    let token = w.secret_ref(lp, "aws_session_token", lp_path);
    match (id, secret, token) {
        (None, None, None) => Some(AwsCredentials::DefaultChain),
        (Some(SecretRef::Literal(a)), Some(SecretRef::Literal(s)), t) => {
            let session_token = match t {
                None => None,
                Some(SecretRef::Literal(t)) => Some(t),
                Some(SecretRef::Env(_)) => {
                    w.error(
                        &join(lp_path, "aws_session_token"),
                        "must be inline when the access key is inline",
                    );
                    return None;
                }
            };
            w.secrets.push(a.clone());
            w.secrets.push(s.clone());
            if let Some(t) = &session_token {
                w.secrets.push(t.clone());
            }
            Some(AwsCredentials::Inline {
                access_key_id: a,
                secret_access_key: s,
                session_token,
            })
        }
        (id, secret, token) => {
            // Envoy's signer reads the standard variables from its own environment; other names
            // cannot be passed to it without writing the secret into Envoy's config.
            let standard = [
                (id, "aws_access_key_id", "AWS_ACCESS_KEY_ID"),
                (secret, "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                (token, "aws_session_token", "AWS_SESSION_TOKEN"),
            ];
            let mut ok = true;
            for (r, field, name) in standard {
                match r {
                    None => {}
                    Some(SecretRef::Env(n)) if n == name => {}
                    Some(_) => {
                        ok = false;
                        w.error(
                            &join(lp_path, field),
                            format!("must be os.environ/{name}: Envoy's aws_request_signing filter signs Bedrock requests and reads the standard AWS variables"),
                        );
                    }
                }
            }
            ok.then_some(AwsCredentials::Environment)
        }
    }
}

/// Registers the variables Envoy's signer may read so the filter masks them, and, for `tollgate
/// check`, warns once when no credential source the signer would use is visible.
pub(crate) fn check_sources(w: &mut Walker, creds: &AwsCredentials, lp_path: &str) {
    let base = match creds {
        AwsCredentials::AssumeRole { source, .. } => source.as_ref(),
        other => other,
    };
    if matches!(base, AwsCredentials::Inline { .. }) {
        return;
    }
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        w.optional_secret_env(name);
    }
    if w.strictness != Strictness::Check
        || w.warnings
            .iter()
            .any(|i| i.message.starts_with(NO_CREDENTIALS))
    {
        return;
    }
    let only_env = matches!(base, AwsCredentials::Environment);
    if visible_sources(w.env, only_env).is_empty() {
        let message = if only_env {
            format!("{NO_CREDENTIALS}: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set. Envoy signs with them only; without them Bedrock refuses the requests (clients get a 502 naming the gateway's credentials)")
        } else {
            format!("{NO_CREDENTIALS} (no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, no credentials or config file, no web identity or container credentials). Envoy's default chain tries EC2 instance metadata last; where it finds nothing, Bedrock refuses the requests (clients get a 502 naming the gateway's credentials). Set aws_access_key_id/aws_secret_access_key, or give Envoy one of those sources")
        };
        w.warn(lp_path, message);
    }
}

/// The credential sources of Envoy's default chain that this process can see, in the chain's
/// order (instance metadata, which only a network call would show, is left out).
pub(crate) fn visible_sources(env: &dyn Env, only_env: bool) -> Vec<&'static str> {
    let set = |name: &str| env.var(name).is_some_and(|v| !v.trim().is_empty());
    let mut found = Vec::new();
    if set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY") {
        found.push("environment");
    }
    if only_env {
        return found;
    }
    let home_file = |var: &str, file: &str| match env.var(var).filter(|v| !v.is_empty()) {
        Some(path) => env.file_exists(&path),
        None => env
            .var("HOME")
            .filter(|h| !h.is_empty())
            .is_some_and(|h| env.file_exists(&format!("{h}/.aws/{file}"))),
    };
    if home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials") {
        found.push("credentials file");
    }
    if home_file("AWS_CONFIG_FILE", "config") {
        found.push("config file");
    }
    if set("AWS_WEB_IDENTITY_TOKEN_FILE") && set("AWS_ROLE_ARN") {
        found.push("web identity");
    }
    if set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || set("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        found.push("container");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    struct TestEnv {
        vars: Vec<(&'static str, &'static str)>,
        files: HashSet<&'static str>,
    }

    impl Env for TestEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
        fn file_exists(&self, path: &str) -> bool {
            self.files.contains(path)
        }
    }

    fn env(vars: &[(&'static str, &'static str)], files: &[&'static str]) -> TestEnv {
        TestEnv {
            vars: vars.to_vec(),
            files: files.iter().copied().collect(),
        }
    }

    #[test]
    fn arn_regions() {
        assert_eq!(
            arn_region("arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-5-sonnet-20240620-v1:0"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("converse/arn:aws:bedrock:us-east-2:1:provisioned-model/x"),
            Some("us-east-2")
        );
        assert_eq!(arn_region("anthropic.claude-3-haiku-20240307-v1:0"), None);
        assert_eq!(arn_region("arn:aws:iam::1:role/x"), None);
        assert_eq!(arn_region("arn:aws:bedrock::1:x"), None);
    }

    #[test]
    fn sources_in_chain_order() {
        assert!(visible_sources(&env(&[("HOME", "/h")], &[]), false).is_empty());
        assert!(
            visible_sources(&env(&[("AWS_ACCESS_KEY_ID", "AKIA")], &[]), false).is_empty(),
            "an id without a secret is no source"
        );
        let all = env(
            &[
                ("AWS_ACCESS_KEY_ID", "AKIA"),
                ("AWS_SECRET_ACCESS_KEY", "s"),
                ("HOME", "/h"),
                ("AWS_CONFIG_FILE", "/etc/aws.conf"),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
                (
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "/v2/credentials/x",
                ),
            ],
            &["/h/.aws/credentials", "/etc/aws.conf"],
        );
        assert_eq!(
            visible_sources(&all, false),
            [
                "environment",
                "credentials file",
                "config file",
                "web identity",
                "container"
            ]
        );
        assert_eq!(visible_sources(&all, true), ["environment"]);
        // A named file that does not exist is no source, whatever HOME holds.
        let named = env(
            &[("HOME", "/h"), ("AWS_SHARED_CREDENTIALS_FILE", "/nope")],
            &["/h/.aws/credentials"],
        );
        assert!(visible_sources(&named, false).is_empty());
    }
}
