use super::*;
use serde_json::json;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_ok(doc: Value, e: &HashMap<String, String>) -> (Config, Vec<Issue>) {
    let r = load(&doc, e, Strictness::Serve);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    (r.config.unwrap(), r.warnings)
}

fn errors(doc: Value) -> Vec<String> {
    let r = load(&doc, &env(&[("K", "sk-x")]), Strictness::Serve);
    assert!(r.config.is_none());
    r.errors.iter().map(|i| i.to_string()).collect()
}

#[test]
fn loads_the_issue_example() {
    let doc = json!({
        "model_list": [
            {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "os.environ/ANTHROPIC_API_KEY", "api_base": "http://127.0.0.1:9000"}},
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY"}},
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"}}
        ],
        "litellm_settings": {"drop_params": false, "set_verbose": true},
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"}
    });
    let e = env(&[
        ("ANTHROPIC_API_KEY", "sk-ant-1"),
        ("OPENAI_API_KEY", "sk-oai-1"),
        ("TOLLGATE_MASTER_KEY", "sk-master"),
    ]);
    let r = load(&doc, &e, Strictness::Serve);
    // anthropic is still a placeholder provider in this build stage; openai must load.
    let _ = r;
    let doc = json!({
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY"}},
            {"model_name": "gpt", "litellm_params": {"model": "gpt-4o", "api_key": "os.environ/OPENAI_API_KEY", "api_base": "http://127.0.0.1:9001/v1"}}
        ],
        "litellm_settings": {"drop_params": true, "set_verbose": true},
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"}
    });
    let (c, warnings) = load_ok(doc, &e);
    assert_eq!(c.master_key.as_deref(), Some("sk-master"));
    assert_eq!(c.group("gpt").unwrap(), &[0, 1]);
    assert_eq!(c.deployments[0].id, "gpt.0");
    assert_eq!(c.deployments[1].id, "gpt.1");
    assert_eq!(c.deployments[0].cluster, "tollgate_api.openai.com_443");
    assert_eq!(c.deployments[0].authority, "api.openai.com");
    assert_eq!(c.deployments[0].base_path, "/v1");
    assert_eq!(c.deployments[1].cluster, "tollgate_127.0.0.1_9001");
    assert_eq!(c.deployments[1].authority, "127.0.0.1:9001");
    assert_eq!(c.clusters.len(), 2);
    assert!(c.settings.drop_params);
    assert!(c.env_keys.contains(&"OPENAI_API_KEY".to_string()));
    assert!(c.env_keys.contains(&"TOLLGATE_MASTER_KEY".to_string()));
    assert!(
        warnings
            .iter()
            .any(|w| w.path == "litellm_settings.set_verbose"),
        "{warnings:?}"
    );
    let v: Value = serde_json::from_slice(&c.models_json).unwrap();
    assert_eq!(v["data"][0]["id"], "gpt");
}

#[test]
fn errors_name_the_field() {
    let errs = errors(
        json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_bse": "http://x"}}]}),
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("model_list[0].litellm_params.api_bse:")
                && e.contains("did you mean 'api_base'")),
        "{errs:?}"
    );
    let errs = errors(
        json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "nosuch/x"}}]}),
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("model_list[0].litellm_params.model:") && e.contains("nosuch")),
        "{errs:?}"
    );
    let errs = errors(
        json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "os.environ/MISSING"}}]}),
    );
    assert!(
        errs.iter().any(
            |e| e.starts_with("model_list[0].litellm_params.api_key:") && e.contains("MISSING")
        ),
        "{errs:?}"
    );
    let errs = errors(
        json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": "ftp://x"}}]}),
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("model_list[0].litellm_params.api_base:")),
        "{errs:?}"
    );
    let errs = errors(json!({"model_list": []}));
    assert!(
        errs.iter().any(|e| e.starts_with("model_list:")),
        "{errs:?}"
    );
    let errs = errors(json!({"modle_list": []}));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("modle_list:") && e.contains("model_list")),
        "{errs:?}"
    );
    let errs = errors(
        json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x"}}], "litellm_settings": {"drop_params": "maybe"}}),
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("litellm_settings.drop_params:")),
        "{errs:?}"
    );
    let errs = errors(
        json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "hosted_vllm/llama"}}]}),
    );
    assert!(
        errs.iter().any(|e| e.contains("api_base is required")),
        "{errs:?}"
    );
}

#[test]
fn check_mode_only_warns_about_missing_env() {
    let doc = json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "os.environ/NOT_HERE"}}]});
    let r = load(&doc, &env(&[]), Strictness::Check);
    assert!(r.errors.is_empty());
    assert!(r.warnings.iter().any(|w| w.message.contains("NOT_HERE")));
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let doc = json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "sk-very-secret-literal"}}]});
    let (c, _) = load_ok(doc, &env(&[]));
    assert!(!format!("{c:?}").contains("sk-very-secret"));
}

#[test]
fn base_urls() {
    let u = parse_base_url("https://x.openai.azure.com/").unwrap();
    assert!(u.tls && u.port == 443 && u.authority == "x.openai.azure.com" && u.path.is_empty());
    let u = parse_base_url("http://[::1]:8080/v1").unwrap();
    assert_eq!(
        (
            u.host.as_str(),
            u.port,
            u.authority.as_str(),
            u.path.as_str()
        ),
        ("::1", 8080, "[::1]:8080", "/v1")
    );
    assert!(parse_base_url("http://user:pw@x").is_err());
    assert!(parse_base_url("http://x:99999").is_err());
    assert!(parse_base_url("http:///v1").is_err());
}

/// `tollgate_settings`' body limits: defaults, values, errors by path. The response buffer is
/// never below the request limit (one buffer limit per stream in Envoy).
#[test]
fn body_limits() {
    let model = json!([{"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "os.environ/K"}}]);
    let e = env(&[("K", "sk-x")]);
    let (c, _) = load_ok(json!({"model_list": model}), &e);
    let s = &c.settings;
    assert_eq!(s.max_request_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(s.max_response_body_bytes, DEFAULT_MAX_RESPONSE_BYTES);

    let (c, warnings) = load_ok(
        json!({"model_list": model, "tollgate_settings": {"max_request_body_bytes": 4096,
            "max_response_body_bytes": 8192}}),
        &e,
    );
    let s = &c.settings;
    assert_eq!(
        (s.max_request_body_bytes, s.max_response_body_bytes),
        (4096, 8192)
    );
    assert!(
        !warnings
            .iter()
            .any(|w| w.path.starts_with("tollgate_settings")),
        "{warnings:?}"
    );

    // Below the request limit: raised to it, with a warning that says why.
    let (c, warnings) = load_ok(
        json!({"model_list": model, "general_settings": {"max_request_size_mb": 1},
            "tollgate_settings": {"max_response_body_bytes": 2048}}),
        &e,
    );
    assert_eq!(c.settings.max_response_body_bytes, 1 << 20);
    assert!(warnings
        .iter()
        .any(|w| w.path == "tollgate_settings.max_response_body_bytes"));

    let errs = errors(json!({"model_list": model, "tollgate_settings": {
        "max_request_body_bytes": 5_000_000_000u64, "max_response_body_bytes": 10}}));
    for field in [
        "tollgate_settings.max_request_body_bytes: must be at most 4294967295",
        "tollgate_settings.max_response_body_bytes: must be a number >= 1024",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(field)),
            "{field}: {errs:?}"
        );
    }
    let errs =
        errors(json!({"model_list": model, "general_settings": {"max_request_size_mb": 5000}}));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("general_settings.max_request_size_mb: must be at most")),
        "{errs:?}"
    );
}

/// `tollgate_settings`' bounds on a client's time and connections.
#[test]
fn client_limits() {
    let model = json!([{"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "os.environ/K"}}]);
    let e = env(&[("K", "sk-x")]);
    let (c, _) = load_ok(json!({"model_list": model}), &e);
    let s = &c.settings;
    assert_eq!(s.request_headers_timeout_secs, 10.0);
    assert_eq!(s.request_receive_timeout_secs, 60.0);
    assert_eq!(s.max_downstream_connections, 10_000);

    let (c, _) = load_ok(
        json!({"model_list": model, "tollgate_settings": {"request_headers_timeout": 0,
            "request_receive_timeout": 2.5, "max_downstream_connections": 3}}),
        &e,
    );
    let s = &c.settings;
    assert_eq!(
        (
            s.request_headers_timeout_secs,
            s.request_receive_timeout_secs
        ),
        (0.0, 2.5)
    );
    assert_eq!(s.max_downstream_connections, 3);

    let errs = errors(json!({"model_list": model, "tollgate_settings": {
        "request_headers_timeout": -1, "request_receive_timeout": "soon",
        "max_downstream_connections": 0}}));
    for field in [
        "request_headers_timeout: must be a number >= 0",
        "request_receive_timeout: must be a number",
        "max_downstream_connections: must be a number >= 1",
    ] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("tollgate_settings.{field}"))),
            "{field}: {errs:?}"
        );
    }

    // The access log: off unless asked for; stdout, stderr or an absolute path.
    assert_eq!(c.settings.access_log, None);
    for (v, want) in [
        ("stdout", Some("stdout")),
        ("/var/log/tollgate.json", Some("/var/log/tollgate.json")),
        ("off", None),
    ] {
        let (c, _) = load_ok(
            json!({"model_list": model, "tollgate_settings": {"access_log": v}}),
            &e,
        );
        assert_eq!(c.settings.access_log.as_deref(), want);
    }
    let errs =
        errors(json!({"model_list": model, "tollgate_settings": {"access_log": "logs/a.json"}}));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("tollgate_settings.access_log: must be stdout")),
        "{errs:?}"
    );
}

/// `model_info.envoy_cluster` routes a deployment to a cluster of the user's Envoy: no cluster of
/// Tollgate's for it, the api_base still giving the authority and path.
#[test]
fn envoy_cluster_names_a_cluster_of_the_users() {
    let e = env(&[("K", "sk-x")]);
    let istio = "outbound|443||api.example.com";
    let (c, warnings) = load_ok(
        json!({"model_list": [
            {"model_name": "mesh", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/K",
                "api_base": "https://api.example.com/v1"}, "model_info": {"envoy_cluster": istio}},
            {"model_name": "mesh", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/K",
                "api_base": "https://api.example.com/v1"}, "model_info": {"envoy_cluster": istio}},
            {"model_name": "direct", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/K"}}
        ]}),
        &e,
    );
    assert!(
        !warnings.iter().any(|w| w.path.contains("envoy_cluster")),
        "{warnings:?}"
    );
    let d = &c.deployments[0];
    assert_eq!(d.cluster, istio);
    assert!(!d.cluster_is_rendered());
    assert_eq!(d.authority, "api.example.com");
    assert_eq!(d.base_path, "/v1");
    assert!(c.deployments[2].cluster_is_rendered());
    let rendered: Vec<&str> = c.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(rendered, ["tollgate_api.openai.com_443"]);
    let own: Vec<(&str, usize)> = c
        .envoy_clusters()
        .iter()
        .map(|(n, d)| (*n, d.index))
        .collect();
    assert_eq!(own, [(istio, 0)]);

    // Bad names fail with the field path; Tollgate's own names are refused.
    for (v, want) in [
        (json!(""), "is not an Envoy cluster name"),
        (json!("my cluster"), "is not an Envoy cluster name"),
        (json!("a\nb"), "is not an Envoy cluster name"),
        (json!(7), "must be a string, not a number"),
        (
            json!("tollgate_attempts"),
            "is named like the clusters Tollgate renders",
        ),
    ] {
        let errs = errors(json!({"model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "os.environ/K"}},
            {"model_name": "m", "litellm_params": {"model": "openai/x", "api_key": "os.environ/K"},
             "model_info": {"envoy_cluster": v}}]}));
        assert!(
            errs.iter().any(
                |e| e.starts_with("model_list[1].model_info.envoy_cluster: ") && e.contains(want)
            ),
            "{v}: {errs:?}"
        );
    }

    // A Bedrock deployment signed by Envoy: the user's cluster must sign; said, not refused.
    let (c, warnings) = load_ok(
        json!({"model_list": [{"model_name": "b", "litellm_params": {
            "model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", "aws_region_name": "us-east-1",
            "aws_access_key_id": "AKIAX", "aws_secret_access_key": "s"},
            "model_info": {"envoy_cluster": "egress_bedrock"}}]}),
        &e,
    );
    assert_eq!(c.deployments[0].cluster, "egress_bedrock");
    assert!(c.clusters.is_empty());
    assert!(
        warnings
            .iter()
            .any(|w| w.path == "model_list[0].model_info.envoy_cluster"
                && w.message.contains("aws_request_signing")),
        "{warnings:?}"
    );
}
