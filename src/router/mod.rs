//! Chooses the deployment of a model group that serves a request.

use crate::config::{Config, Mode};
use crate::error::ApiError;
use crate::providers::Operation;

/// The first deployment of the group able to serve the operation.
pub fn pick(config: &Config, alias: &str, op: Operation) -> Result<usize, ApiError> {
    let group = config.group(alias).ok_or_else(|| {
        ApiError::not_found(format!(
            "The model `{alias}` does not exist or you do not have access to it. Call GET /v1/models to list the models this gateway serves."
        ))
        .with_param("model")
        .with_code("model_not_found")
    })?;
    group
        .iter()
        .copied()
        .find(|&i| {
            config
                .deployment(i)
                .is_some_and(|d| serves(d.mode, d.provider.supports(op), op))
        })
        .ok_or_else(|| {
            ApiError::invalid_param(
                "model",
                format!("The model `{alias}` does not serve {}.", op.name()),
            )
            .with_code("unsupported_operation")
        })
}

fn serves(mode: Mode, provider_supports: bool, op: Operation) -> bool {
    provider_supports
        && matches!(
            (mode, op),
            (Mode::Any, _)
                | (Mode::Chat, Operation::Chat)
                | (Mode::Embedding, Operation::Embeddings)
        )
}
