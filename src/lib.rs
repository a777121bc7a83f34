//! Tollgate: an OpenAI-compatible LLM gateway that runs inside Envoy as a proxy-wasm HTTP filter
//! (this crate, built for wasm32-wasip1) or as a dynamic module (`dynamic-module/`, which links it).
//!
//! Everything but `host::abi` and `host::envoy` is plain Rust, tested natively: the filter's
//! pipeline ([`filter`]) talks to Envoy only through the [`host::HttpHost`] trait.
//! ARCHITECTURE.md walks a request through the modules.

pub mod auth;
pub mod config;
pub mod error;
pub mod filter;
pub mod fleet;
pub mod hex;
pub mod host;
pub mod ingress;
pub mod json;
pub mod keys;
pub mod openai;
pub mod pricing;
pub mod providers;
pub mod quota;
pub mod router;
pub mod secrets;
pub mod spend_log;
pub mod stats;
pub mod store;
pub mod stream;
pub mod typo;
pub mod wildcard;

#[cfg(not(target_arch = "wasm32"))]
pub mod render;

#[cfg(all(target_arch = "wasm32", not(test)))]
proxy_wasm::main! {{
    host::envoy::start();
}}
