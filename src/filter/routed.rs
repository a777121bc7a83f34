//! A routed request's state from its headers phase to its end: how it reaches its provider, the
//! deployment serving it, what it asked for and was admitted for, and what came back.

use std::sync::Arc;

use crate::auth::Principal;
use crate::config::{Config, Deployment};
use crate::error::ApiError;
use crate::host::HttpHost;
use crate::ingress::ClientApi;
use crate::openai::{ResponseCtx, Usage};
use crate::providers::{self, Operation, Provider, StreamTranslator};
use crate::quota::{Admission, Estimate};
use crate::stats;

use super::attempt::AttemptCtx;
use super::{accounting, fleet_admit, HttpFilter};

/// How a routed request reaches its provider.
pub(super) enum Via {
    /// The gateway translates for the group's one deployment.
    Direct,
    /// The gateway hands the request to the attempt listener; responses come back in OpenAI's shape.
    Attempts,
    /// One attempt, in the attempt listener.
    Attempt(Box<AttemptCtx>),
}

pub(super) struct Routed {
    pub(super) op: Operation,
    pub(super) via: Via,
    /// The deployment serving the request, once known.
    pub(super) deployment: Option<usize>,
    /// That deployment with its model filled from the client's model name, when its model is a
    /// template (`openai/*`): what the request is translated, routed and priced for.
    pub(super) filled: Option<Arc<Deployment>>,
    /// The `model` label of the request's metrics, when not the client's model name: a name a
    /// wildcard serves that no price table lists is counted under the wildcard, so clients
    /// cannot grow the metric series without bound.
    pub(super) model_label: Option<String>,
    pub(super) principal: Principal,
    pub(super) ctx: ResponseCtx,
    pub(super) stream: bool,
    pub(super) embeddings_base64: bool,
    pub(super) response: ResponsePlan,
    /// When the request reached the filter, for latency and time-to-first-token.
    pub(super) started_ms: u64,
    pub(super) headers_ms: Option<u64>,
    pub(super) first_byte_ms: Option<u64>,
    /// The request's worst case, once its body is accepted: what a cut-off response is charged.
    pub(super) estimate: Option<Estimate>,
    /// What the request asked for (body size, output cap, completions): its bounds.
    pub(super) ask: Option<accounting::Ask>,
    /// The output cap the gateway set because the budget left could not pay for more (the
    /// response says so).
    pub(super) output_capped: Option<u64>,
    /// The store refused the request's budget once and it was estimated again (see
    /// `fleet_admit`).
    pub(super) budget_asked_again: bool,
    /// Set once the request is admitted against its key's limits; settled in `on_done`.
    pub(super) admission: Option<Admission>,
    /// The status the client saw, once known.
    pub(super) status: Option<u16>,
    /// The provider's final usage, once the response completed and reported one it could be
    /// charged for.
    pub(super) usage: Option<Usage>,
    /// The provider's answer completed (a whole body translated, or a stream that finished),
    /// whether or not it reported usage.
    pub(super) answered: bool,
    /// Why the usage the provider reported cannot be charged (it is out of the request's bounds).
    pub(super) unusable: Option<&'static str>,
    /// Waiting for the store's admission (fleet mode).
    pub(super) fleet: Option<Box<fleet_admit::Pending>>,
    /// The hash of a key this replica must read from the store before it trusts it: the request
    /// is authenticated in its body phase (see `key_read`).
    pub(super) deferred_key: Option<String>,
    /// The client's `anthropic-beta` flags its deployment takes in the body, read in the headers
    /// phase (see [`super::upstream::client_betas`]).
    pub(super) anthropic_beta: u32,
    /// The Responses API response this request made was remembered as its deployment's (see
    /// [`crate::router::sticky`]).
    pub(super) response_remembered: bool,
    /// A Responses request the shared store keeps (see `kept_responses`).
    pub(super) keeping: Option<Box<super::kept_responses::Keeping>>,
}

/// The deployment a request is served by: one of the configuration's, or a copy of a model
/// template filled for the request.
pub(super) enum Served<'c> {
    Config(&'c Deployment),
    Filled(Arc<Deployment>),
}

impl std::ops::Deref for Served<'_> {
    type Target = Deployment;

    fn deref(&self) -> &Deployment {
        match self {
            Served::Config(d) => d,
            Served::Filled(d) => d,
        }
    }
}

impl Routed {
    pub(super) fn labels<'a>(&'a self, d: Option<&'a Deployment>) -> stats::Labels<'a> {
        let (team, key_alias) = self.principal.metric_labels();
        stats::Labels {
            team,
            key_alias,
            model: self.metric_model(),
            provider: d.map(|d| d.provider.name()).unwrap_or(stats::NONE),
        }
    }

    pub(super) fn metric_model(&self) -> &str {
        self.model_label.as_deref().unwrap_or(&self.ctx.model)
    }

    /// The deployment serving the request, once known (filled for it, for a model template).
    pub(super) fn served<'c>(&self, config: &'c Config) -> Option<Served<'c>> {
        match &self.filled {
            Some(d) => Some(Served::Filled(Arc::clone(d))),
            None => self
                .deployment
                .and_then(|i| config.deployment(i))
                .map(Served::Config),
        }
    }

    /// The body's `model` and `stream` (where the operation has one) must be what Envoy read
    /// from it in the headers phase, which routing followed: a body the two readers disagree on
    /// is refused, in the words of the client's API.
    pub(super) fn check_body(&self, model: &str, stream: Option<bool>) -> Result<(), ApiError> {
        let messages = self.ctx.api == ClientApi::Messages;
        if model != self.ctx.model {
            return Err(ApiError::invalid_param(
                "model",
                if messages {
                    "model: Input should be a valid string"
                } else {
                    "Invalid type for 'model': expected a string."
                },
            ));
        }
        if stream.is_some_and(|s| s != self.stream) {
            return Err(ApiError::invalid_param(
                "stream",
                if messages {
                    "stream: Input should be a valid boolean"
                } else {
                    "Invalid type for 'stream': expected a boolean."
                },
            ));
        }
        Ok(())
    }

    /// Serves the request with deployment `index`, filled from `name` when it is a template.
    pub(super) fn serve_with(&mut self, config: &Config, index: usize, name: &str) {
        self.deployment = Some(index);
        self.filled = filled(config, index, name);
    }

    /// Who translates this request's responses: the deployment's provider, or (behind the
    /// attempt listener, which already speaks OpenAI) the OpenAI pass-through.
    pub(super) fn translator<'a>(&self, d: Option<&'a Deployment>) -> Option<&'a dyn Provider> {
        match self.via {
            Via::Attempts if self.ctx.api == ClientApi::Messages => {
                Some(&providers::anthropic::ANTHROPIC)
            }
            Via::Attempts => Some(&providers::openai::OPENAI),
            _ => d.map(|d| d.provider),
        }
    }
}

pub(super) enum ResponsePlan {
    Pending,
    /// Buffer the whole body, then translate it (a completion, or an error with its status).
    Translate {
        upstream_error: Option<(u16, Option<String>)>,
    },
    Stream(Box<dyn StreamTranslator>),
    /// Pass the body through as it is (an attempt listener's error, already OpenAI-shaped).
    Relay,
}

/// Deployment `index` filled from `name`, when its model is a template.
pub(super) fn filled(config: &Config, index: usize, name: &str) -> Option<Arc<Deployment>> {
    match config.serving(index, name)? {
        std::borrow::Cow::Owned(d) => Some(Arc::new(d)),
        std::borrow::Cow::Borrowed(_) => None,
    }
}

impl HttpFilter {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_routed(
        &self,
        host: &dyn HttpHost,
        op: Operation,
        via: Via,
        deployment: Option<usize>,
        principal: Principal,
        alias: String,
        stream: bool,
    ) -> Routed {
        let request_id = host.request_header("x-request-id").unwrap_or_default();
        let id_prefix = match (op, self.api) {
            (Operation::Chat, ClientApi::Messages) => "msg_",
            (Operation::Chat, ClientApi::Chat) => "chatcmpl-",
            (Operation::Chat, ClientApi::Responses) => "resp_",
            (Operation::Embeddings, _) => "emb-",
        };
        let label = self.config.metric_model(&alias);
        let model_label = (label != alias).then(|| label.to_string());
        Routed {
            op,
            via,
            deployment,
            filled: None,
            model_label,
            principal,
            ctx: ResponseCtx {
                id: format!("{id_prefix}{}", request_id.replace('-', "")),
                created: host.now_ms() / 1000,
                model: alias,
                include_usage: false,
                api: self.api,
            },
            stream,
            embeddings_base64: false,
            response: ResponsePlan::Pending,
            started_ms: host.now_ms(),
            headers_ms: None,
            first_byte_ms: None,
            estimate: None,
            output_capped: None,
            budget_asked_again: false,
            ask: None,
            admission: None,
            status: None,
            usage: None,
            answered: false,
            unusable: None,
            fleet: None,
            deferred_key: None,
            anthropic_beta: 0,
            response_remembered: false,
            keeping: None,
        }
    }
}
