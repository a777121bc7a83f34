//! A deployment's prices and context window, resolved once at load: the built-in entry (by the
//! deployment's model, or by LiteLLM's `base_model`), overridden field by field by `model_info`
//! and then by `litellm_params` (LiteLLM's custom pricing wins over its model map too).

use serde_json::{Map, Value};

use super::walker::{join, Walker};
use crate::pricing::{self, ModelInfo, Partial};

/// Where a deployment's pricing fields live.
pub(super) struct Fields<'a> {
    pub alias: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub lp: &'a Map<String, Value>,
    pub lp_path: &'a str,
    pub mi: Option<&'a Map<String, Value>>,
    pub mi_path: &'a str,
}

const SET_A_PRICE: &str = "charged 0 until a price is configured: set litellm_params.input_cost_per_token/output_cost_per_token";

/// The deployment's model info; for a model template (`openai/*`) without `base_model`, what
/// its configuration states instead, laid over each model's built-in entry per request.
pub(super) fn resolve(w: &mut Walker, f: &Fields) -> (Option<ModelInfo>, Option<Partial>) {
    // LiteLLM reads model_info.base_model first, then litellm_params.base_model.
    let info_base = match f.mi {
        Some(mi) => base_model(w, mi, f.mi_path),
        None => None,
    };
    let params_base = base_model(w, f.lp, f.lp_path);
    let base = info_base.or(params_base);

    let builtin = match &base {
        Some((name, _)) => pricing::builtin_for_base_model(f.provider, name),
        None => pricing::builtin_partial(f.provider, f.model),
    };
    let from_info = match f.mi {
        Some(mi) => stated(w, mi, f.mi_path, true),
        None => Partial::default(),
    };
    let from_params = stated(w, f.lp, f.lp_path, false);
    if base.is_none() && f.model.contains('*') {
        let stated = from_params.or(from_info);
        if !stated.is_priced() && pricing::builtin_count(f.provider) == 0 {
            w.warn(
                &join(f.lp_path, "model"),
                format!(
                    "'{}/{}': the built-in price table has no {} models, so the models of '{}' are {SET_A_PRICE}",
                    f.provider, f.model, f.provider, f.alias
                ),
            );
        }
        return (None, Some(stated));
    }
    let merged = from_params.or(from_info).or(builtin.unwrap_or_default());

    if !merged.is_priced() {
        let (path, unknown) = match &base {
            Some((name, path)) => (path.clone(), format!("'{name}'")),
            None => (
                join(f.lp_path, "model"),
                format!("'{}/{}'", f.provider, f.model),
            ),
        };
        let hint = if f.provider == "azure" && base.is_none() {
            " (or model_info.base_model, e.g. azure/gpt-4o, to price an Azure deployment as its model)"
        } else {
            ""
        };
        w.warn(
            &path,
            format!(
                "{unknown} has no built-in price, so model '{}' is {SET_A_PRICE}{hint}",
                f.alias
            ),
        );
    } else if builtin.is_none() {
        for (field, missing, kind) in [
            ("input_cost_per_token", merged.input.is_none(), "input"),
            ("output_cost_per_token", merged.output.is_none(), "output"),
        ] {
            if missing {
                w.warn(
                    &join(f.lp_path, field),
                    format!(
                        "is not set and '{}/{}' has no built-in price: {kind} tokens of model '{}' are charged 0",
                        f.provider, f.model, f.alias
                    ),
                );
            }
        }
    }
    ((!merged.is_empty()).then(|| merged.finish()), None)
}

fn base_model(w: &mut Walker, map: &Map<String, Value>, path: &str) -> Option<(String, String)> {
    let name = w.string(map, "base_model", path)?;
    let field = join(path, "base_model");
    if name.trim().is_empty() {
        w.error(&field, "must not be empty");
        return None;
    }
    Some((name, field))
}

/// The pricing fields one section states; `limits` for `model_info`, which also carries the
/// context window (`max_tokens` is LiteLLM's legacy name for the output limit).
fn stated(w: &mut Walker, map: &Map<String, Value>, path: &str, limits: bool) -> Partial {
    let mut p = Partial {
        input: cost(w, map, path, "input_cost_per_token"),
        output: cost(w, map, path, "output_cost_per_token"),
        cache_read: cost(w, map, path, "cache_read_input_token_cost"),
        cache_creation: cost(w, map, path, "cache_creation_input_token_cost"),
        ..Partial::default()
    };
    if limits {
        p.max_input_tokens = tokens(w, map, path, "max_input_tokens");
        let max_output = tokens(w, map, path, "max_output_tokens");
        let max_tokens = tokens(w, map, path, "max_tokens");
        p.max_output_tokens = max_output.or(max_tokens);
    }
    p
}

/// A price in USD per token, as LiteLLM writes it, in pico-USD.
fn cost(w: &mut Walker, map: &Map<String, Value>, path: &str, key: &str) -> Option<u64> {
    let usd = w.number(map, key, path, 0.0)?;
    let pico = pricing::pico_from_usd(usd);
    if pico.is_none() {
        w.error(
            &join(path, key),
            format!("{usd} USD per token is too large: prices are USD per token, e.g. 3e-6"),
        );
    }
    pico
}

fn tokens(w: &mut Walker, map: &Map<String, Value>, path: &str, key: &str) -> Option<u64> {
    let n = w.number(map, key, path, 1.0)?;
    // Whole numbers below 2^53 convert exactly.
    if n.fract() != 0.0 || n > 9_007_199_254_740_992.0 {
        w.error(
            &join(path, key),
            format!("must be a whole number of tokens, not {n}"),
        );
        return None;
    }
    Some(n as u64)
}

#[cfg(test)]
mod tests {
    use super::super::{load, Issue, Report, Strictness};
    use crate::pricing::{builtin, ModelInfo, Price};
    use hashbrown::HashMap;
    use serde_json::{json, Value};

    fn report(entry: Value) -> Report {
        let env: HashMap<String, String> = [
            ("OPENAI_API_KEY", "sk-x"),
            ("AZURE_API_KEY", "k"),
            ("HOSTED_VLLM_API_KEY", "k"),
            ("OLLAMA_API_KEY", "k"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let doc = json!({"model_list": [entry], "general_settings": {"master_key": "sk-m"}});
        load(&doc, &env, Strictness::Serve)
    }

    /// The deployment's model info and the warnings about it (none about other things).
    fn resolved(entry: Value) -> (Option<ModelInfo>, Vec<Issue>) {
        let mut r = report(entry);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let d = r.config.take().unwrap().deployments.remove(0);
        assert!(d.wildcard_pricing.is_none());
        (d.model_info, r.warnings)
    }

    fn errors(entry: Value) -> Vec<String> {
        let r = report(entry);
        assert!(r.config.is_none());
        r.errors.iter().map(|e| e.to_string()).collect()
    }

    fn azure(extra_params: Value, model_info: Value) -> Value {
        let mut lp = json!({
            "model": "azure/my-gpt4o-deployment",
            "api_base": "https://my-resource.openai.azure.com",
            "api_version": "2024-10-21",
        });
        if let (Some(lp), Value::Object(extra)) = (lp.as_object_mut(), extra_params) {
            lp.extend(extra);
        }
        json!({"model_name": "azure-gpt", "litellm_params": lp, "model_info": model_info})
    }

    #[test]
    fn a_known_model_gets_its_built_in_entry_without_warnings() {
        let (info, warnings) = resolved(
            json!({"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini"}}),
        );
        assert!(info.is_some());
        assert_eq!(info, builtin("openai", "gpt-4o-mini"));
        assert!(warnings.is_empty(), "{warnings:?}");
        // A model the provider does not charge for (a local Ollama) is priced, at 0.
        let (info, warnings) = resolved(
            json!({"model_name": "local", "litellm_params": {"model": "ollama_chat/llama3", "api_base": "http://127.0.0.1:11434"}}),
        );
        assert_eq!(info.map(|i| i.price), Some(Price::default()));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn an_unpriced_deployment_loads_with_a_warning_naming_it() {
        let (info, warnings) = resolved(json!({"model_name": "llama", "litellm_params": {
            "model": "hosted_vllm/my-llama", "api_base": "http://127.0.0.1:8000/v1"}}));
        assert_eq!(info, None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = warnings[0].to_string();
        assert!(w.starts_with("model_list[0].litellm_params.model: 'hosted_vllm/my-llama' has no built-in price, so model 'llama' is charged 0 until a price is configured: set litellm_params.input_cost_per_token/output_cost_per_token"), "{w}");

        // An Azure deployment's name says nothing: the warning points at base_model too.
        let (info, warnings) = resolved(azure(json!({}), json!({})));
        assert_eq!(info, None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].path == "model_list[0].litellm_params.model"
                && warnings[0].message.contains("'azure/my-gpt4o-deployment'")
                && warnings[0]
                    .message
                    .contains("charged 0 until a price is configured")
                && warnings[0].message.contains("model_info.base_model"),
            "{warnings:?}"
        );
    }

    #[test]
    fn azure_deployments_are_priced_by_base_model() {
        let expected = builtin("azure", "gpt-4o");
        assert!(expected.is_some());
        for base in ["azure/gpt-4o", "gpt-4o", "AZURE/GPT-4O"] {
            let (info, warnings) = resolved(azure(json!({}), json!({"base_model": base})));
            assert_eq!(info, expected, "{base}");
            assert!(warnings.is_empty(), "{base}: {warnings:?}");
        }
        // Data-zone deployments have their own prices.
        let (info, _) = resolved(azure(json!({}), json!({"base_model": "azure/eu/gpt-4o"})));
        assert_eq!(info, builtin("azure", "eu/gpt-4o"));
        assert_ne!(info, expected);
        // LiteLLM also reads litellm_params.base_model; model_info's wins.
        let (info, _) = resolved(azure(json!({"base_model": "azure/gpt-4o"}), json!({})));
        assert_eq!(info, expected);
        let (info, _) = resolved(azure(
            json!({"base_model": "azure/eu/gpt-4o"}),
            json!({"base_model": "azure/gpt-4o"}),
        ));
        assert_eq!(info, expected);
        // base_model overrides the deployment's own model for any provider.
        let (info, _) = resolved(
            json!({"model_name": "g", "litellm_params": {"model": "openai/gpt-4o-mini"},
            "model_info": {"base_model": "gpt-4o"}}),
        );
        assert_eq!(info, builtin("openai", "gpt-4o"));
    }

    #[test]
    fn an_unknown_base_model_is_named_in_the_warning() {
        let (info, warnings) = resolved(azure(json!({}), json!({"base_model": "azure/gpt-9000"})));
        assert_eq!(info, None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].path, "model_list[0].model_info.base_model");
        assert!(
            warnings[0].message.starts_with(
                "'azure/gpt-9000' has no built-in price, so model 'azure-gpt' is charged 0"
            ),
            "{warnings:?}"
        );
    }

    #[test]
    fn overrides_apply_field_by_field() {
        let base = builtin("openai", "gpt-4o-mini").unwrap();
        let (info, warnings) = resolved(json!({"model_name": "gpt",
            "litellm_params": {"model": "openai/gpt-4o-mini", "input_cost_per_token": 1e-6,
                               "cache_creation_input_token_cost": "1.25e-6"},
            "model_info": {"input_cost_per_token": 9e-6, "output_cost_per_token": 2e-6,
                           "max_input_tokens": 1000, "max_tokens": 500}}));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            info,
            Some(ModelInfo {
                price: Price {
                    input: 1_000_000, // litellm_params beats model_info
                    output: 2_000_000,
                    cache_read: base.price.cache_read,
                    cache_creation: 1_250_000,
                },
                max_input_tokens: Some(1000),
                max_output_tokens: Some(500),
            })
        );
        // max_output_tokens beats the legacy max_tokens.
        let (info, _) = resolved(
            json!({"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini"},
            "model_info": {"max_output_tokens": 64, "max_tokens": 500}}),
        );
        assert_eq!(info.and_then(|i| i.max_output_tokens), Some(64));
    }

    #[test]
    fn a_configured_price_prices_an_unknown_model() {
        let (info, warnings) = resolved(json!({"model_name": "llama", "litellm_params": {
            "model": "hosted_vllm/my-llama", "api_base": "http://127.0.0.1:8000/v1",
            "input_cost_per_token": 2e-7, "output_cost_per_token": 4e-7},
            "model_info": {"max_input_tokens": 8192}}));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            info,
            Some(ModelInfo {
                // Without a cache price, cached tokens cost what input does (as in LiteLLM).
                price: Price {
                    input: 200_000,
                    output: 400_000,
                    cache_read: 200_000,
                    cache_creation: 200_000
                },
                max_input_tokens: Some(8192),
                max_output_tokens: None,
            })
        );
        // Half a price: the missing half is named.
        let (info, warnings) = resolved(json!({"model_name": "llama", "litellm_params": {
            "model": "hosted_vllm/my-llama", "api_base": "http://127.0.0.1:8000/v1",
            "input_cost_per_token": 2e-7}}));
        assert_eq!(info.map(|i| i.price.output), Some(0));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].path == "model_list[0].litellm_params.output_cost_per_token"
                && warnings[0]
                    .message
                    .contains("output tokens of model 'llama' are charged 0"),
            "{warnings:?}"
        );
        // A context window alone is kept; the price is still unknown and warned about.
        let (info, warnings) = resolved(json!({"model_name": "llama", "litellm_params": {
            "model": "hosted_vllm/my-llama", "api_base": "http://127.0.0.1:8000/v1"},
            "model_info": {"max_input_tokens": 4096}}));
        assert_eq!(
            info,
            Some(ModelInfo {
                price: Price::default(),
                max_input_tokens: Some(4096),
                max_output_tokens: None
            })
        );
        assert!(
            warnings.len() == 1 && warnings[0].message.contains("charged 0"),
            "{warnings:?}"
        );
    }

    #[test]
    fn invalid_overrides_are_errors_by_field() {
        let errs = errors(json!({"model_name": "gpt",
            "litellm_params": {"model": "openai/gpt-4o-mini", "input_cost_per_token": -1e-6,
                               "output_cost_per_token": "cheap", "cache_read_input_token_cost": 1e9,
                               "base_model": ""},
            "model_info": {"cache_creation_input_token_cost": true, "max_input_tokens": 0,
                           "max_output_tokens": 1.5, "max_tokens": "many", "output_cost_per_token": -2}}));
        for (field, needle) in [
            (
                "litellm_params.input_cost_per_token",
                "must be a number >= 0",
            ),
            ("litellm_params.output_cost_per_token", "must be a number"),
            ("litellm_params.cache_read_input_token_cost", "too large"),
            ("litellm_params.base_model", "must not be empty"),
            (
                "model_info.cache_creation_input_token_cost",
                "must be a number",
            ),
            ("model_info.max_input_tokens", "must be a number >= 1"),
            ("model_info.max_output_tokens", "whole number of tokens"),
            ("model_info.max_tokens", "must be a number"),
            ("model_info.output_cost_per_token", "must be a number >= 0"),
        ] {
            let prefix = format!("model_list[0].{field}: ");
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&prefix) && e.contains(needle)),
                "{field}: {errs:?}"
            );
        }
        assert_eq!(errs.len(), 9, "{errs:?}");
    }

    #[test]
    fn pricing_fields_are_acted_on_not_ignored() {
        let (_, warnings) = resolved(azure(
            json!({"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6,
                   "cache_read_input_token_cost": 1e-7, "cache_creation_input_token_cost": 1e-6}),
            json!({"base_model": "azure/gpt-4o", "max_input_tokens": 10, "max_output_tokens": 10,
                   "max_tokens": 10, "input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6,
                   "cache_read_input_token_cost": 1e-7, "cache_creation_input_token_cost": 1e-6}),
        ));
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
