//! Settlement, once the stream is over however it ended: the gateway charges what the request
//! cost, frees its slots and keeps its spend record; an attempt records how its deployment did.

use std::sync::Arc;

use crate::auth::Principal;
use crate::config::{Config, Deployment};
use crate::host::HttpHost;
use crate::quota::Charge;
use crate::router::attempts;
use crate::router::health::{self, Outcome};
use crate::stats;

use super::attempt::AttemptCtx;
use super::endpoint::op_name;
use super::routed::{Routed, Via};
use super::{accounting, HttpFilter, State, LOG_FIELDS};

impl HttpFilter {
    /// Settles a routed request (see [`HttpFilter::on_done`]).
    pub(super) fn settle(&mut self, host: &mut dyn HttpHost) {
        let config = Arc::clone(&self.config);
        let State::Routed(routed) = &mut self.state else {
            return;
        };
        if let Via::Attempt(a) = &routed.via {
            let success = match (routed.status, routed.usage, routed.headers_ms) {
                (Some(s), Some(u), Some(h)) if s < 400 => Some(Outcome::Success {
                    latency_ms: h.saturating_sub(routed.started_ms),
                    ttft_ms: routed
                        .stream
                        .then(|| {
                            routed
                                .first_byte_ms
                                .map(|f| f.saturating_sub(routed.started_ms))
                        })
                        .flatten(),
                    tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
                }),
                _ => None,
            };
            finish_attempt(&config, host, a, routed.deployment, success);
            return;
        }
        if let Some(pending) = routed.fleet.take() {
            // The client went away while the store was deciding: nothing ran; what the parties'
            // ledgers committed or held for it is theirs again.
            accounting::fleet_abandoned(host, &config, &routed.principal, pending.ask);
            return;
        }
        let Some(estimate) = routed.estimate.take() else {
            // Refused before its body was accepted: nothing ran, nothing to charge.
            return;
        };
        let d = routed.served(&config);
        let d = d.as_deref();
        let reservation = Charge {
            cost: estimate.cost,
            tokens: estimate.tokens,
        };
        let charge = match (routed.status, routed.usage, d) {
            (Some(s), Some(u), Some(d)) if s < 400 => Charge {
                cost: accounting::micro_cost(d, &u),
                tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
            },
            (Some(s), _, _) if s >= 400 => Charge::default(),
            // Served without usage it could be charged for (missing, unreadable, absurd), started
            // but never delivered its usage (a stream cut off), or the client went away before
            // any response while the provider had the whole request: the reservation.
            _ => reservation,
        };
        if routed.status.is_some_and(|s| s < 400) && routed.usage.is_none() {
            let why = routed.unusable.or_else(|| {
                let expected = d.is_none_or(|d| d.provider.reports_usage(routed.op));
                (routed.answered && expected).then_some("no usage reported")
            });
            if let Some(why) = why {
                let provider = d.map_or(stats::NONE, |d| d.provider.name());
                let labels = stats::RouterLabels {
                    model: routed.metric_model(),
                    provider,
                };
                host.increment_counter(&stats::usage_unusable(&labels), 1);
                log::warn!(
                    "tollgate: {provider} answered model '{}' with usage that cannot be charged ({why}); charged the reservation, ${:.6}",
                    routed.ctx.model,
                    crate::quota::usd(reservation.cost)
                );
            }
        }
        let labels = routed.labels(d);
        if charge.cost > 0 {
            host.increment_counter(&stats::spend(&labels), charge.cost);
        }
        if routed.status.is_some_and(|s| s < 400) && d.is_some_and(|d| !accounting::is_priced(d)) {
            host.increment_counter(&stats::unpriced(&labels), 1);
        }
        if let Some(admission) = routed.admission.take() {
            let now = host.now_ms() / 1000;
            let fleet_mode = config.store.is_some();
            accounting::settle(
                host,
                &config,
                &routed.principal,
                &admission,
                fleet_mode,
                now,
                charge,
            );
        }
        let log = config.settings.access_log.is_some();
        if log || config.store.is_some() {
            spend_record(host, routed, d, charge, config.store.is_some(), log);
        }
    }
}

/// The request's spend record: its fields for the access log ([`LOG_FIELDS`]) when one is
/// configured (`log`), and kept for `GET /spend/logs` when a store is (`keep`; see `spend_log`).
pub(super) fn spend_record(
    host: &mut dyn HttpHost,
    routed: &Routed,
    d: Option<&Deployment>,
    charge: Charge,
    keep: bool,
    log: bool,
) {
    let key = match &routed.principal {
        Principal::Key(k) => Some(&k.def),
        _ => None,
    };
    let u = routed.usage.unwrap_or_default();
    let status = routed.status.unwrap_or(0);
    let now_ms = host.now_ms();
    let time = crate::keys::time::format_rfc3339_ms;
    let record = crate::spend_log::Record {
        request_id: &routed.ctx.id,
        api_key: key.map(|k| k.token.as_str()),
        key_alias: key.and_then(|k| k.key_alias.as_deref()),
        team_id: key.and_then(|k| k.team_id.as_deref()),
        model_group: &routed.ctx.model,
        model_id: d.map(|d| d.id.as_str()),
        custom_llm_provider: d.map(|d| d.provider.name()),
        call_type: op_name(routed.op),
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        cached_tokens: u.cached_tokens,
        spend: crate::quota::usd(charge.cost),
        spend_micro: charge.cost,
        status: if (1..400).contains(&status) {
            "success"
        } else {
            "failure"
        },
        status_code: status,
        start_time: time(routed.started_ms),
        end_time: time(now_ms),
    };
    if log {
        let (prompt, completion, cached) = (
            record.prompt_tokens.to_string(),
            record.completion_tokens.to_string(),
            record.cached_tokens.to_string(),
        );
        let cost = format!("{:.6}", record.spend);
        // In LOG_FIELDS' order.
        let values: [&str; LOG_FIELDS.len()] = [
            record.request_id,
            record.key_alias.unwrap_or_default(),
            record.api_key.unwrap_or_default(),
            record.team_id.unwrap_or_default(),
            record.model_group,
            record.model_id.unwrap_or_default(),
            record.custom_llm_provider.unwrap_or_default(),
            &prompt,
            &completion,
            &cached,
            &cost,
            record.status,
        ];
        for (name, value) in LOG_FIELDS.iter().zip(values) {
            host.set_log_field(name, value);
        }
    }
    if keep && !host.keep_spend_record(&record) {
        log::warn!(
            "tollgate: could not keep request {}'s spend record",
            routed.ctx.id
        );
    }
}

/// An attempt is over: its deployment's record gets the outcome (unless a failure already did),
/// and the request's routing state is freed unless another attempt follows.
pub(super) fn finish_attempt(
    config: &Config,
    host: &mut dyn HttpHost,
    a: &AttemptCtx,
    deployment: Option<usize>,
    success: Option<Outcome>,
) {
    if !a.outcome_recorded {
        if let Some(d) = deployment.and_then(|i| config.deployment(i)) {
            let now_ms = host.now_ms();
            health::finish(
                host.store(),
                &d.id,
                success.unwrap_or(Outcome::Neutral),
                &config.router,
                now_ms,
            );
        }
    }
    if !a.retry_signaled {
        attempts::release(host.store(), &a.attempt_id);
    }
}
