//! `GET /spend/logs` (LiteLLM's; master key only): the requests' spend records, read from the
//! shared store (`tg_spend_logs`), where every replica's tick sends them (see `spend_log`). And
//! the fleet's spend of a key for `GET /key/info` (`tg_party_get`).

use serde_json::Value;

use super::store_call::{unavailable, Then};
use super::{json_reply, HttpFilter, State};
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::keys::admin::query_param;
use crate::keys::{self, time};
use crate::store::remote::{self, CallError, Exchange};

/// The most records one answer carries (the library's own bound).
pub const MAX_LOGS: u64 = 1000;

/// The filter `tg_spend_logs` takes, from LiteLLM's query parameters: `api_key` (the key or its
/// hash), `start_date` and `end_date` (a date, whole days in UTC, or an RFC 3339 time), and
/// Tollgate's `limit` (at most [`MAX_LOGS`]).
pub fn filter(query: &str) -> Result<Value, ApiError> {
    let mut f = serde_json::Map::new();
    if let Some(k) = query_param(query, "api_key").filter(|k| !k.is_empty()) {
        let hash = if keys::is_hash(&k) {
            k
        } else {
            keys::hash_key(&k)
        };
        f.insert("api_key".into(), Value::from(hash));
    }
    let date = |name: &str, end: bool| -> Result<Option<u64>, ApiError> {
        let Some(v) = query_param(query, name).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let secs = time::parse_rfc3339(&v).ok_or_else(|| {
            ApiError::invalid_param(
                name,
                format!("Invalid '{name}': '{v}' is not a date (YYYY-MM-DD) or an RFC 3339 time."),
            )
        })?;
        // A bare date as the end means the whole day.
        let whole_day = end && v.trim().len() == 10;
        Ok(Some(if whole_day {
            secs.saturating_add(86_400)
                .saturating_mul(1000)
                .saturating_sub(1)
        } else {
            secs.saturating_mul(1000)
        }))
    };
    if let Some(ms) = date("start_date", false)? {
        f.insert("start_ms".into(), Value::from(ms));
    }
    if let Some(ms) = date("end_date", true)? {
        f.insert("end_ms".into(), Value::from(ms));
    }
    let limit = match query_param(query, "limit") {
        None => MAX_LOGS,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX_LOGS).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_param(
                    "limit",
                    format!("Invalid 'limit': must be an integer from 1 to {MAX_LOGS}."),
                )
            })?,
    };
    f.insert("limit".into(), Value::from(limit));
    Ok(Value::Object(f))
}

fn call(function: &'static str, args: &[&[u8]], timeout_ms: u64) -> Option<Exchange> {
    let call = remote::fcall(function, &[], args, timeout_ms).ok()?;
    Some(Exchange::new(call).with_library(crate::fleet::LIBRARY, timeout_ms))
}

fn store_not_configured() -> ApiError {
    ApiError::not_found(
        "No shared store is configured (tollgate_settings.store): spend logs are kept in the shared store.",
    )
    .with_code("store_not_configured")
}

/// What renders `/key/info` or `/team/info`, given the fleet-wide spend (if the store said).
type InfoFn = fn(
    &crate::keys::admin::AdminCtx,
    &str,
    Option<&Value>,
) -> Result<Vec<u8>, crate::error::ApiError>;
impl HttpFilter {
    /// `GET /spend/logs`, already authenticated as the master key.
    pub(super) fn spend_logs(&mut self, host: &mut dyn HttpHost, query: &str) -> Action {
        let Some(store) = &self.config.store else {
            return self.reply_error(host, &store_not_configured());
        };
        let timeout = store.call_timeout_ms;
        let f = match filter(query) {
            Ok(f) => f,
            Err(e) => return self.reply_error(host, &e),
        };
        let text = crate::json::to_vec(&f);
        self.state = State::Done;
        match call("tg_spend_logs", &[&text], timeout) {
            Some(e) => self.wait_for_store(host, e, Then::SpendLogs),
            None => self.reply_error(host, &ApiError::server("could not encode the call")),
        }
    }

    /// The store's answer: the records, oldest first, as a JSON array (LiteLLM's shape).
    pub(super) fn spend_logs_answered(
        &mut self,
        host: &mut dyn HttpHost,
        result: Result<Value, CallError>,
    ) -> Action {
        let logs = match &result {
            Ok(Value::String(text)) => serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|v| v.get("logs").cloned())
                .filter(Value::is_array),
            _ => None,
        };
        match (logs, result) {
            (Some(logs), _) => {
                json_reply(host, &crate::json::to_vec(&logs));
                Action::Pause
            }
            (None, Err(e)) => self.reply_error(host, &unavailable(&e)),
            (None, Ok(v)) => {
                log::warn!("tollgate: tg_spend_logs answered {v}");
                self.reply_error(
                    host,
                    &unavailable(&CallError::NotSent("an unreadable answer".into())),
                )
            }
        }
    }

    /// `GET /key/info` with a store: the fleet's spend of the key (`tg_party_get`), then the
    /// answer. Without an answer, this replica's view.
    pub(super) fn key_info_from_fleet(
        &mut self,
        host: &mut dyn HttpHost,
        query: &str,
    ) -> Option<Action> {
        let token = crate::keys::admin::info_target(crate::keys::admin::AdminOp::Info, query)?;
        let def = keys::find(&self.config.keys, host.store(), &token)?;
        let then = Then::KeyInfo {
            query: query.to_string(),
        };
        self.party_from_fleet(host, &def.usage_record(), &def.limits(), then)
    }

    /// `GET /team/info` with a store: the fleet's spend of the team (`tg_party_get`), then the
    /// answer. Without an answer, this replica's view.
    pub(super) fn team_info_from_fleet(
        &mut self,
        host: &mut dyn HttpHost,
        query: &str,
    ) -> Option<Action> {
        let id = crate::keys::teams::info_target(query)?;
        let def = keys::find_team(&self.config.teams, host.store(), &id)?;
        let then = Then::TeamInfo {
            query: query.to_string(),
        };
        self.party_from_fleet(host, &def.usage_record(), &def.limits(), then)
    }

    /// Asks the store for a party's fleet-wide state (`tg_party_get`), to answer with `then`.
    fn party_from_fleet(
        &mut self,
        host: &mut dyn HttpHost,
        usage_record: &str,
        limits: &crate::quota::Limits,
        then: Then,
    ) -> Option<Action> {
        let store = self.config.store.as_ref()?;
        let party = crate::fleet::party_id(usage_record).to_string();
        let limits = crate::quota::fleet::WireLimits::from(limits);
        let limits = serde_json::to_vec(&limits).ok()?;
        let exchange = call(
            "tg_party_get",
            &[party.as_bytes(), &limits],
            store.call_timeout_ms,
        )?;
        self.state = State::Done;
        Some(self.wait_for_store(host, exchange, then))
    }

    pub(super) fn team_info_answered(
        &mut self,
        host: &mut dyn HttpHost,
        query: &str,
        result: Result<Value, CallError>,
    ) -> Action {
        self.info_answered(host, query, result, "team", crate::keys::teams::info)
    }

    pub(super) fn key_info_answered(
        &mut self,
        host: &mut dyn HttpHost,
        query: &str,
        result: Result<Value, CallError>,
    ) -> Action {
        self.info_answered(host, query, result, "key", crate::keys::admin::info)
    }

    /// `/key/info` or `/team/info` (`what`) with the fleet-wide spend the store gave, or this
    /// replica's when it gave none.
    fn info_answered(
        &mut self,
        host: &mut dyn HttpHost,
        query: &str,
        result: Result<Value, CallError>,
        what: &str,
        info: InfoFn,
    ) -> Action {
        let fleet = match &result {
            Ok(Value::String(text)) => serde_json::from_str::<Value>(text)
                .ok()
                .filter(|v| v.get("spend").is_some_and(Value::is_u64)),
            _ => None,
        };
        if fleet.is_none() {
            log::warn!(
                "tollgate: the store did not give a {what}'s spend; /{what}/info shows this replica's"
            );
        }
        let ctx = crate::keys::admin::AdminCtx {
            config: &self.config,
            store: host.store(),
            now: host.now_ms() / 1000,
            random: [0; 32],
        };
        match info(&ctx, query, fleet.as_ref()) {
            Ok(body) => {
                json_reply(host, &body);
                Action::Pause
            }
            Err(e) => self.reply_error(host, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litellm_query_parameters_become_the_store_filter() {
        let f = filter("api_key=sk-abc&start_date=2026-12-01&end_date=2026-12-05").unwrap();
        assert_eq!(f["api_key"], keys::hash_key("sk-abc"));
        assert_eq!(f["start_ms"], 1_796_083_200_000u64);
        assert_eq!(f["end_ms"], 1_796_515_200_000u64 - 1);
        assert_eq!(f["limit"], MAX_LOGS);
        let f = filter("end_date=2026-12-05T10:00:00Z&limit=5").unwrap();
        assert_eq!(f["end_ms"], 1_796_464_800_000u64);
        assert_eq!(f["limit"], 5);
        assert!(f.get("api_key").is_none());
        for bad in [
            "start_date=yesterday",
            "limit=0",
            "limit=5000",
            "end_date=2026-13-01",
        ] {
            assert!(filter(bad).is_err(), "{bad}");
        }
    }
}
