//! Key and team management on the gateway (`/key/...`, `/team/...`): who may call what, the
//! calls answered from headers alone, and those answered once their body is in (through the
//! shared store when there is one: see `key_read`).

use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::keys::admin::{self, AdminCtx, AdminOp};

use super::response::json_reply;
use super::{HttpFilter, Next, State};

impl HttpFilter {
    /// A key-management call's headers: the master key's (or a virtual key reading its own
    /// `/key/info`), answered now or once its body or the store's record is in.
    pub(super) fn route_admin(
        &self,
        host: &mut dyn HttpHost,
        op: AdminOp,
        path: &str,
        now: u64,
        end_of_stream: bool,
    ) -> Result<Next, ApiError> {
        if self.config.master_key.is_none() {
            return Err(
                ApiError::permission("Key management needs general_settings.master_key.")
                    .with_code("no_master_key"),
            );
        }
        // A virtual key may read its own `/key/info` (LiteLLM allows it: how a team
        // checks what its budget has left), and nothing else of key management.
        if op == AdminOp::Info {
            if let Some(token) = self.key_to_read(host).filter(|_| end_of_stream) {
                return Ok(Next::ReadKey(token));
            }
        }
        let mut own_query = None;
        match auth::authenticate(&self.config, host.store(), host, now)? {
            Principal::Master => {}
            Principal::Key(k) if op == AdminOp::Info => {
                let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
                match admin::info_target(op, query) {
                    Some(t) if t != k.def.token => {
                        return Err(ApiError::permission(
                            "A virtual key may read only its own /key/info; other keys need the master key.",
                        )
                        .with_code("not_master_key"));
                    }
                    _ => own_query = Some(format!("key={}", k.def.token)),
                }
            }
            _ => {
                return Err(
                    ApiError::permission("Key management requires the master key.")
                        .with_code("not_master_key"),
                );
            }
        }
        if let Some(query) = own_query {
            if self.config.store.is_some() {
                return Ok(Next::KeyInfo(query));
            }
            let ctx = AdminCtx {
                config: &self.config,
                store: host.store(),
                now,
                random: [0; 32],
            };
            let body = admin::handle(op, &ctx, &query, b"")?;
            json_reply(host, &body);
            return Ok(Next::Replied);
        }
        if op.has_body() {
            // The body arrives in the body phase; Envoy's buffer filter keeps the router
            // from acting on the request meanwhile.
            return Ok(Next::AwaitBody(op));
        }
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let target = match op {
            AdminOp::TeamInfo => {
                crate::keys::teams::info_target(query).map(|t| crate::keys::team_token(&t))
            }
            _ => admin::info_target(op, query),
        };
        if let Some(token) = target
            .and_then(|t| self.token_to_read(host, t))
            .filter(|_| end_of_stream)
        {
            return Ok(Next::ReadKey(token));
        }
        if op == AdminOp::Info && self.config.store.is_some() {
            return Ok(Next::KeyInfo(query.to_string()));
        }
        if op == AdminOp::TeamInfo && self.config.store.is_some() {
            return Ok(Next::TeamInfo(query.to_string()));
        }
        let ctx = AdminCtx {
            config: &self.config,
            store: host.store(),
            now,
            random: [0; 32],
        };
        let body = admin::handle(op, &ctx, query, b"")?;
        json_reply(host, &body);
        Ok(Next::Replied)
    }

    /// A key-management call's body is in: answered (through the store when it writes and
    /// there is one).
    pub(super) fn admin_body(
        &mut self,
        host: &mut dyn HttpHost,
        op: AdminOp,
        body_size: usize,
    ) -> Action {
        let body = host.request_body(body_size).unwrap_or_default();
        if self.config.store.is_some() && op.writes() {
            return self.admin_through_store(host, op, body);
        }
        let random = host.random_bytes();
        let ctx = AdminCtx {
            config: &self.config,
            store: host.store(),
            now: host.now_ms() / 1000,
            random,
        };
        let result = admin::handle(op, &ctx, "", &body);
        match result {
            Ok(out) => {
                json_reply(host, &out);
                self.state = State::Done;
                Action::Pause
            }
            Err(e) => self.reply_error(host, &e),
        }
    }

    /// `GET /key/info` with a store: the fleet's spend first, else this replica's view.
    pub(super) fn key_info(&mut self, host: &mut dyn HttpHost, query: &str) -> Action {
        match self.key_info_from_fleet(host, query) {
            Some(action) => action,
            None => {
                let now = host.now_ms() / 1000;
                let ctx = AdminCtx {
                    config: &self.config,
                    store: host.store(),
                    now,
                    random: [0; 32],
                };
                match admin::info(&ctx, query, None) {
                    Ok(body) => {
                        json_reply(host, &body);
                        self.state = State::Done;
                        Action::Pause
                    }
                    Err(e) => self.reply_error(host, &e),
                }
            }
        }
    }

    /// `GET /team/info` with a store: the team's fleet-wide spend first, else this replica's view.
    pub(super) fn team_info(&mut self, host: &mut dyn HttpHost, query: &str) -> Action {
        match self.team_info_from_fleet(host, query) {
            Some(action) => action,
            None => {
                let ctx = AdminCtx {
                    config: &self.config,
                    store: host.store(),
                    now: host.now_ms() / 1000,
                    random: [0; 32],
                };
                match crate::keys::teams::info(&ctx, query, None) {
                    Ok(body) => {
                        json_reply(host, &body);
                        self.state = State::Done;
                        Action::Pause
                    }
                    Err(e) => self.reply_error(host, &e),
                }
            }
        }
    }
}
