//! A request whose key's or team's fleet lease cannot hold it (near a limit, or before the first
//! sync): the store admits it (`tg_admit`), or refuses it, while the request waits in its body
//! phase. See `fleet` and `quota::fleet`.

use super::accounting::{self, FleetAsk};
use super::store_call::Then;
use super::{HttpFilter, State};
use crate::config::store::FailureMode;
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::store::tick;

/// What a waiting request keeps until the store answers.
#[derive(Debug)]
pub struct Pending {
    pub ask: FleetAsk,
    /// The translated body, written once the request is admitted.
    pub body: Option<Vec<u8>>,
}

impl HttpFilter {
    /// Asks the store to admit the request (the parties `ask` names) and waits.
    pub(super) fn ask_fleet(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        ask: FleetAsk,
        body: Option<Vec<u8>>,
    ) -> Action {
        let Some(settings) = self.config.store.as_ref() else {
            return self.reply_error(host, &ApiError::server("no shared store is configured"));
        };
        let timeout = settings.call_timeout_ms;
        let random = host.random_bytes();
        let replica = tick::ensure_replica(host.store(), random);
        let State::Routed(routed) = &mut self.state else {
            return Action::Continue;
        };
        // While the store is known to be down, a request does not wait to find out again.
        let exchange = if crate::host::tick::store_down(host.store()) {
            None
        } else {
            accounting::fleet_call(&self.config, &routed.principal, &ask, &replica, timeout)
        };
        routed.fleet = Some(Box::new(Pending { ask, body }));
        match exchange {
            Some(exchange) => self.wait_for_store(host, exchange, Then::Admit { body_size }),
            // The store is down, or nothing to send (cannot happen for a virtual key): as if
            // the store did not answer.
            None => self.fleet_answered(host, body_size, Err(())),
        }
    }

    /// The store's answer to the request's admission (or none): go on, or refuse.
    pub(super) fn fleet_answered(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        answer: Result<&str, ()>,
    ) -> Action {
        let local_fallback = self
            .config
            .store
            .as_ref()
            .is_some_and(|s| s.failure_mode == FailureMode::Local);
        let State::Routed(routed) = &mut self.state else {
            return Action::Continue;
        };
        let Some(pending) = routed.fleet.take() else {
            return self.reply_error(host, &ApiError::server("no admission was waiting"));
        };
        let now_ms = host.now_ms();
        let outcome = accounting::fleet_answered(
            host,
            &self.config,
            &routed.principal,
            pending.ask,
            now_ms,
            answer,
            local_fallback,
        );
        match outcome {
            Ok(admission) => {
                routed.admission = admission;
                self.admitted(host, body_size, pending.body)
            }
            Err(crate::quota::Refusal::Store) if answer.is_err() => {
                let e = ApiError::new(
                    503,
                    "api_error",
                    "The gateway's shared store did not answer and this gateway refuses requests under a budget or limit without it (tollgate_settings.store.failure_mode: closed).",
                )
                .with_code("store_unavailable");
                self.refuse(host, &e, &[("retry-after", "1".to_string())])
            }
            Err(crate::quota::Refusal::Budget { .. })
                if answer.is_ok()
                    && routed.op == crate::providers::Operation::Chat
                    && !routed.budget_asked_again =>
            {
                // The store knows of less budget left than this replica did (another replica
                // spent it): the request is estimated, and capped, again from what the store
                // said, once.
                routed.budget_asked_again = true;
                self.on_request_body(host, body_size, true)
            }
            Err(refusal) => self.refuse_admission(host, &refusal),
        }
    }
}
