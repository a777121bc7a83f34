//! LiteLLM's extensions to chat completions, made right for an OpenAI-shaped upstream.
//!
//! A Messages client's request reaches the providers as chat completions carrying what that API
//! has no field for (see `ingress::anthropic::request`): `thinking`, `top_k`, an assistant turn's
//! `thinking_blocks`, `cache_control` on messages, content parts and tools, a `file` part's
//! `format`. OpenAI, Azure and most of the compatible family refuse fields they do not document
//! (`400 unknown_parameter`), so, as LiteLLM does for them:
//! - `thinking` becomes `reasoning_effort` for a reasoning model (see [`effort_for_budget`]) and
//!   is dropped for any other: an OpenAI-shaped model thinks as it does;
//! - `thinking_blocks` and `cache_control` are dropped: OpenAI caches prompts by itself and has no
//!   way to take reasoning back;
//! - `top_k` stays for a server that takes it, and is otherwise the client's 400 naming it, or
//!   dropped with `drop_params`.
//!
//! A request without any of them is untouched: [`rewrite`] answers `None` after looking at the
//! top-level keys and scanning the raw `messages` and `tools` for the keys, and the body passes
//! through as before.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::super::{unsupported_or_dropped, RequestOptions};
use crate::error::ApiError;
use crate::json::{self, Fields};
use crate::openai::request::Thinking;
use crate::openai::ChatRequest;

/// What an OpenAI-shaped deployment takes of the extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Accepts {
    /// The server takes `top_k` (vLLM, Together, Fireworks, OpenRouter, Perplexity).
    pub top_k: bool,
    /// The model reasons (o-series, gpt-5): `thinking` becomes `reasoning_effort`.
    pub reasoning: Option<Reasoning>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// o1, o3, o4: `low`, `medium`, `high`.
    OSeries,
    /// gpt-5 and later: `minimal` too.
    Gpt5,
}

impl Reasoning {
    /// The reasoning family of an OpenAI model id (or an Azure deployment named after one).
    pub fn of(model: &str) -> Option<Reasoning> {
        if model.starts_with("gpt-5") {
            Some(Reasoning::Gpt5)
        } else if ["o1", "o3", "o4"].iter().any(|p| model.starts_with(p)) {
            Some(Reasoning::OSeries)
        } else {
            None
        }
    }
}

/// Anthropic's thinking budget as OpenAI's effort, with LiteLLM's thresholds (its Messages
/// adapter's): 10,000 tokens and more `high`, 5,000 `medium`, 2,000 `low`, less `minimal`
/// (`low` for the o-series, which has no `minimal`).
pub fn effort_for_budget(budget: u64, reasoning: Reasoning) -> &'static str {
    match budget {
        b if b >= 10_000 => "high",
        b if b >= 5_000 => "medium",
        b if b >= 2_000 => "low",
        _ if reasoning == Reasoning::Gpt5 => "minimal",
        _ => "low",
    }
}

/// The effort `thinking` asks of a reasoning model: only an enabled budget says one; adaptive
/// thinking is the model's default, and disabled thinking cannot be asked of it.
fn effort(thinking: Option<Thinking>, reasoning: Reasoning) -> Option<&'static str> {
    match thinking? {
        Thinking {
            mode: "enabled",
            budget_tokens: Some(b),
        } => Some(effort_for_budget(b, reasoning)),
        _ => None,
    }
}

/// How the top-level fields change: some left out, some replaced (or added, when absent).
#[derive(Debug, Default)]
pub struct Rewrite {
    drop: Vec<&'static str>,
    set: Vec<(&'static str, Box<RawValue>)>,
}

impl Rewrite {
    fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.set.is_empty()
    }

    /// The client's fields with the rewrite applied, in their order; added ones last.
    pub fn apply<'s>(&'s self, fields: &Fields<'s>) -> Fields<'s> {
        let mut out: Fields<'s> = Vec::with_capacity(fields.len() + self.set.len());
        for (key, value) in fields {
            let name = key.as_str();
            if self.drop.contains(&name) {
                continue;
            }
            match self.set.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => out.push((key.clone(), v)),
                None => out.push((key.clone(), *value)),
            }
        }
        for (name, value) in &self.set {
            if json::get(fields, name).is_none() {
                out.push((json::Text::from(*name), value));
            }
        }
        out
    }
}

/// Keys inside `messages` (and `tools`) an OpenAI-shaped upstream refuses.
const MESSAGE_KEYS: [&str; 4] = [
    "\"thinking_blocks\"",
    "\"cache_control\"",
    "\"format\"",
    "\"file_url\"",
];

fn mentions(raw: &RawValue, keys: &[&str]) -> bool {
    let text = raw.get().as_bytes();
    keys.iter()
        .any(|k| memchr::memmem::find(text, k.as_bytes()).is_some())
}

/// What to change in the request for an OpenAI-shaped upstream, or `None` when nothing
/// (the fast path). `Err`: `top_k` to a server that does not take it, without `drop_params`.
pub fn rewrite(
    req: &ChatRequest,
    provider: &str,
    accepts: Accepts,
    opts: RequestOptions,
) -> Result<Option<Rewrite>, ApiError> {
    let mut rw = Rewrite::default();
    if json::get(&req.fields, "thinking").is_some() {
        rw.drop.push("thinking");
        let asked = req.has("reasoning_effort");
        if let (Some(r), false) = (accepts.reasoning, asked) {
            if let Some(e) = effort(req.thinking, r) {
                rw.set.push(("reasoning_effort", raw_string(e)?));
            }
        }
    }
    if json::get(&req.fields, "top_k").is_some() && !accepts.top_k {
        if req.has("top_k") {
            unsupported_or_dropped(vec!["top_k"], provider, &req.model, opts)?;
        }
        rw.drop.push("top_k");
    }
    if let Some(raw) = json::get(&req.fields, "messages") {
        if mentions(raw, &MESSAGE_KEYS) {
            rw.set.push((
                "messages",
                clean(raw, |m, at| clean_message(m, at, provider))?,
            ));
        }
    }
    if let Some(raw) = json::get(&req.fields, "tools") {
        if mentions(raw, &MESSAGE_KEYS[1..2]) {
            rw.set.push((
                "tools",
                clean(raw, |t, _| {
                    t.remove("cache_control");
                    Ok(())
                })?,
            ));
        }
    }
    Ok((!rw.is_empty()).then_some(rw))
}

fn raw_string(s: &str) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(s).map_err(|_| ApiError::server("could not write a string"))
}

/// An array of objects with `each` applied to every object (and its index).
fn clean(
    raw: &RawValue,
    each: impl Fn(&mut Map<String, Value>, usize) -> Result<(), ApiError>,
) -> Result<Box<RawValue>, ApiError> {
    let mut items: Vec<Value> = serde_json::from_str(raw.get())
        .map_err(|_| ApiError::server("a parsed array no longer parses"))?;
    for (at, item) in items.iter_mut().enumerate() {
        if let Value::Object(o) = item {
            each(o, at)?;
        }
    }
    serde_json::value::to_raw_value(&items)
        .map_err(|_| ApiError::server("could not write the cleaned array"))
}

/// One message without the extensions. A document by URL (LiteLLM's `file_url`, from a Messages
/// `document` with a `url` source) is refused: OpenAI's `file` part takes bytes or a file id.
fn clean_message(m: &mut Map<String, Value>, at: usize, provider: &str) -> Result<(), ApiError> {
    m.remove("thinking_blocks");
    m.remove("cache_control");
    if let Some(Value::Array(parts)) = m.get_mut("content") {
        for (j, part) in parts.iter_mut().enumerate() {
            let Some(part) = part.as_object_mut() else {
                continue;
            };
            part.remove("cache_control");
            if let Some(Value::Object(file)) = part.get_mut("file") {
                file.remove("format");
                if file.contains_key("file_url") {
                    let path = format!("messages[{at}].content[{j}].file.file_url");
                    return Err(ApiError::invalid_param(
                        &path,
                        format!("{path}: {provider} cannot fetch a document by URL; send it as base64 (a `document` with a `base64` source, or `file.file_data`)"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::parse_chat;

    fn run(body: &str, accepts: Accepts, drop_params: bool) -> Result<Option<Value>, ApiError> {
        let req = parse_chat(body.as_bytes())?;
        let rw = rewrite(
            &req,
            "openai",
            accepts,
            RequestOptions {
                drop_params,
                ..Default::default()
            },
        )?;
        Ok(rw.map(|rw| {
            let fields = rw.apply(&req.fields);
            let mut m = Map::new();
            for (k, v) in fields {
                m.insert(
                    k.as_str().to_string(),
                    serde_json::from_str(v.get()).unwrap_or(Value::Null),
                );
            }
            Value::Object(m)
        }))
    }

    const GPT5: Accepts = Accepts {
        top_k: false,
        reasoning: Some(Reasoning::Gpt5),
    };

    #[test]
    fn plain_requests_take_the_fast_path() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"the \"format\" of cache_control"}]}],"response_format":{"type":"text"}}"#;
        assert!(run(body, GPT5, false).ok().flatten().is_none());
    }

    #[test]
    fn thinking_becomes_effort_for_reasoning_models_only() {
        let body = |budget: u64| {
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"thinking":{{"type":"enabled","budget_tokens":{budget}}},"max_tokens":9}}"#
            )
        };
        for (budget, gpt5, o) in [
            (1024, "minimal", "low"),
            (1999, "minimal", "low"),
            (2000, "low", "low"),
            (4999, "low", "low"),
            (5000, "medium", "medium"),
            (9999, "medium", "medium"),
            (10_000, "high", "high"),
            (64_000, "high", "high"),
        ] {
            let out = run(&body(budget), GPT5, false).ok().flatten();
            let out = out.as_ref();
            assert_eq!(
                out.map(|v| v["reasoning_effort"].clone()),
                Some(gpt5.into())
            );
            assert!(out.is_some_and(|v| v.get("thinking").is_none()));
            let o_series = Accepts {
                top_k: false,
                reasoning: Some(Reasoning::OSeries),
            };
            let out = run(&body(budget), o_series, false).ok().flatten();
            assert_eq!(out.map(|v| v["reasoning_effort"].clone()), Some(o.into()));
        }
        // A non-reasoning model: dropped, nothing added.
        let out = run(&body(8000), Accepts::default(), false).ok().flatten();
        assert_eq!(
            out,
            Some(
                serde_json::json!({"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":9})
            )
        );
        // The client's own effort wins; adaptive and disabled thinking ask none.
        let own = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"thinking":{"type":"enabled","budget_tokens":20000},"reasoning_effort":"low"}"#;
        let out = run(own, GPT5, false).ok().flatten();
        assert_eq!(
            out.map(|v| v["reasoning_effort"].clone()),
            Some("low".into())
        );
        for kind in ["adaptive", "disabled"] {
            let b = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"thinking":{{"type":"{kind}"}}}}"#
            );
            let out = run(&b, GPT5, false).ok().flatten();
            assert!(out.is_some_and(
                |v| v.get("reasoning_effort").is_none() && v.get("thinking").is_none()
            ));
        }
    }

    #[test]
    fn a_document_by_url_is_refused_by_name() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"file","file":{"file_url":"https://example.com/a.pdf"}}]}]}"#;
        let e = run(body, GPT5, true).err();
        assert!(e.is_some_and(|e| e.status == 400
            && e.param.as_deref() == Some("messages[0].content[1].file.file_url")));
    }

    #[test]
    fn top_k_is_refused_dropped_or_kept() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"top_k":5}"#;
        let e = run(body, GPT5, false).err();
        assert!(e.as_ref().is_some_and(|e| e.status == 400
            && e.param.as_deref() == Some("top_k")
            && e.message.contains("drop_params")));
        let out = run(body, GPT5, true).ok().flatten();
        assert!(out.is_some_and(|v| v.get("top_k").is_none()));
        let vllm = Accepts {
            top_k: true,
            reasoning: None,
        };
        assert!(run(body, vllm, false).ok().flatten().is_none());
    }

    #[test]
    fn thinking_blocks_and_cache_control_are_removed_everywhere() {
        let body = r#"{"model":"m","messages":[
            {"role":"system","content":[{"type":"text","text":"S","cache_control":{"type":"ephemeral"}}]},
            {"role":"user","content":[{"type":"text","text":"U"},{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBE","filename":"a.pdf","format":"application/pdf"},"cache_control":{"type":"ephemeral"}}]},
            {"role":"assistant","content":"A","thinking_blocks":[{"type":"thinking","thinking":"t","signature":"s"}],"cache_control":{"type":"ephemeral"}}],
            "tools":[{"type":"function","function":{"name":"f","parameters":{}},"cache_control":{"type":"ephemeral"}}]}"#;
        let out = run(body, GPT5, false).ok().flatten();
        assert_eq!(
            out,
            Some(serde_json::json!({"model":"m","messages":[
                {"role":"system","content":[{"type":"text","text":"S"}]},
                {"role":"user","content":[{"type":"text","text":"U"},{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBE","filename":"a.pdf"}}]},
                {"role":"assistant","content":"A"}],
                "tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}))
        );
    }
}
