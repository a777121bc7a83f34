//! `tollgate check CONFIG` and `tollgate render CONFIG`: the filter's own configuration code, run
//! before deploy.

use std::process::ExitCode;

use tollgate::config::{self, ProcessEnv, Report, SecretRef, Strictness};
use tollgate::render::{self, RenderOptions};

const USAGE: &str = "usage:
  tollgate check CONFIG [--env]
  tollgate render CONFIG [--listen HOST:PORT] [--admin HOST:PORT] [--wasm PATH | --module PATH] [--ca-file PATH] [-o FILE]
  tollgate webdis-config CONFIG [--redis HOST:PORT] [--listen HOST:PORT] [-o FILE]

CONFIG is a LiteLLM-style config.yaml (or .json). `check` lists every error and warning by
field path; an unset environment variable a secret is read from is only a warning (secrets live
where Envoy runs) unless `--env` checks against this environment, as Envoy will. `--module` loads
the filter as an Envoy dynamic module (libtollgate_module.so, `make module`) instead of the .wasm.
`webdis-config` writes the webdis.json of the sidecar in front of Redis that
tollgate_settings.store points at (see envoy/README.md); it reads store.auth (and LiteLLM's
redis_password) from the environment and writes them into the file, which is then as secret as
they are.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("tollgate: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let (cmd, rest) = args.split_first().ok_or(USAGE)?;
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    match cmd.as_str() {
        "check" => {
            let mut strictness = Strictness::Check;
            let mut path = None;
            for a in rest {
                match a.as_str() {
                    "--env" => strictness = Strictness::Serve,
                    flag if flag.starts_with('-') => {
                        return Err(format!("unknown option {flag}\n{USAGE}"))
                    }
                    p => {
                        if path.replace(p).is_some() {
                            return Err(USAGE.into());
                        }
                    }
                }
            }
            let path = path.ok_or(USAGE)?;
            let doc = read_document(path)?;
            let report = config::load(&doc, &ProcessEnv, strictness);
            print_issues(&report);
            match &report.config {
                Some(c) => {
                    for (cluster, d) in c.envoy_clusters() {
                        println!(
                            "{}: routes to Envoy's own cluster '{cluster}' (model_list[{}].model_info.envoy_cluster): `tollgate render` does not write it, define it in Envoy's configuration",
                            d.alias, d.index
                        );
                    }
                    let wildcards = if c.patterns.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " and {} wildcard patterns (GET /v1/models lists {} models)",
                            c.patterns.len(),
                            c.listed_models.len()
                        )
                    };
                    println!(
                        "OK: {} deployments in {} model groups{wildcards}, {} upstream clusters, {} warning(s)",
                        c.deployments.len(),
                        c.model_names.len(),
                        c.clusters.len(),
                        report.warnings.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!(
                        "{} error(s): the gateway would refuse to start",
                        report.errors.len()
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        "render" => {
            let (path, opts) = render_args(rest)?;
            let doc = read_document(&path)?;
            let report = config::load(&doc, &ProcessEnv, Strictness::Check);
            let Some(cfg) = &report.config else {
                print_issues(&report);
                eprintln!("{} error(s): not rendering", report.errors.len());
                return Ok(ExitCode::FAILURE);
            };
            for (cluster, d) in cfg.envoy_clusters() {
                eprintln!(
                    "tollgate: not rendering cluster '{cluster}' (model_list[{}].model_info.envoy_cluster): add it to the bootstrap before Envoy loads it",
                    d.index
                );
            }
            let plugin_json = serde_json::to_string(&doc).map_err(|e| e.to_string())?;
            let bootstrap = render::bootstrap(cfg, &plugin_json, &opts.0);
            let yaml = serde_yaml_ng::to_string(&bootstrap).map_err(|e| e.to_string())?;
            let name = std::path::Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let out = format!(
                "# Rendered by `tollgate render` from {name}; regenerate rather than edit.\n{yaml}"
            );
            match opts.1 {
                Some(file) => {
                    std::fs::write(&file, out).map_err(|e| format!("cannot write {file}: {e}"))?
                }
                None => print!("{out}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        "webdis-config" => webdis_config(rest),
        "version" | "--version" => {
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command '{other}'\n{USAGE}")),
    }
}

fn render_args(rest: &[String]) -> Result<(String, (RenderOptions, Option<String>)), String> {
    let mut opts = RenderOptions::default();
    let mut output = None;
    let mut path = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--listen" => {
                (opts.listen_host, opts.listen_port) = render::parse_host_port(&value()?)?
            }
            "--admin" => (opts.admin_host, opts.admin_port) = render::parse_host_port(&value()?)?,
            "--wasm" => opts.wasm_path = value()?,
            "--module" => opts.module_path = Some(value()?),
            "--ca-file" => opts.ca_file = value()?,
            "-o" | "--output" => output = Some(value()?),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}\n{USAGE}")),
            p => {
                if path.replace(p.to_string()).is_some() {
                    return Err(USAGE.into());
                }
            }
        }
    }
    Ok((path.ok_or(USAGE)?, (opts, output)))
}

/// `tollgate webdis-config`: the sidecar's webdis.json for the config's store.
fn webdis_config(rest: &[String]) -> Result<ExitCode, String> {
    let mut path = None;
    let mut redis = None;
    let mut listen = None;
    let mut output = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--redis" => redis = Some(render::parse_host_port(&value()?)?),
            "--listen" => listen = Some(render::parse_host_port(&value()?)?),
            "-o" | "--output" => output = Some(value()?),
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}\n{USAGE}")),
            p => {
                if path.replace(p.to_string()).is_some() {
                    return Err(USAGE.into());
                }
            }
        }
    }
    let path: String = path.ok_or(USAGE)?;
    let doc = read_document(&path)?;
    let report = config::load(&doc, &ProcessEnv, Strictness::Check);
    let Some(cfg) = &report.config else {
        print_issues(&report);
        eprintln!(
            "{} error(s): not writing webdis's config",
            report.errors.len()
        );
        return Ok(ExitCode::FAILURE);
    };
    let store = cfg
        .store
        .as_ref()
        .ok_or("the config has no tollgate_settings.store: nothing to write webdis's config for")?;
    let auth = match &store.auth {
        None => return Err("tollgate_settings.store.auth is required: webdis lets Tollgate's commands through only with basic auth".into()),
        Some(SecretRef::Literal(a)) => a.clone(),
        Some(SecretRef::Env(name)) => std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{name} is not set: webdis.json must hold the credentials themselves (webdis reads no environment)"))?,
    };
    let resolve = |raw: &str| match raw.strip_prefix("os.environ/") {
        Some(name) => std::env::var(name)
            .map_err(|_| format!("{name} is not set (read from the config's Redis fields)")),
        None => Ok(raw.to_string()),
    };
    let litellm = &cfg.litellm_redis;
    let redis = match redis {
        Some(r) => r,
        None => {
            let host = litellm.host.as_deref().map(resolve).transpose()?;
            let port = litellm.port.as_deref().map(resolve).transpose()?;
            let port = match port {
                Some(p) => p
                    .parse::<u16>()
                    .map_err(|_| format!("the config's redis_port '{p}' is not a port"))?,
                None => 6379,
            };
            (host.unwrap_or_else(|| "127.0.0.1".into()), port)
        }
    };
    let redis_password = litellm.password.as_deref().map(resolve).transpose()?;
    // webdis listens where store.url points (an address; a name is served on loopback).
    let listen = listen.unwrap_or_else(|| {
        let host = if store.host.parse::<std::net::IpAddr>().is_ok() {
            store.host.clone()
        } else {
            "127.0.0.1".to_string()
        };
        (host, store.port)
    });
    let value = render::webdis_config(
        (&listen.0, listen.1),
        (&redis.0, redis.1),
        redis_password.as_deref(),
        &auth,
    );
    let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())? + "\n";
    print_issues(&report);
    match output {
        Some(file) => write_secret(&file, &text)?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file only its owner can read (it holds credentials).
fn write_secret(file: &str, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(file)
        .map_err(|e| format!("cannot write {file}: {e}"))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {file}: {e}"))
}

fn read_document(path: &str) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if path.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| format!("{path} is not valid JSON: {e}"))
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{path} is not valid YAML: {e}"))
    }
}

fn print_issues(report: &Report) {
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
}
