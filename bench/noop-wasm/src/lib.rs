//! A proxy-wasm HTTP filter with no logic, for `make bench`: loaded in Tollgate's place, it
//! measures what any Rust proxy-wasm filter costs in Envoy's V8 before it does any work (context
//! creation, one VM entry per callback, the SDK's dispatch). Its configuration is a number N: the
//! filter then makes N host calls (reads of a header the request does not have) per request, which
//! measures the cost of one host call.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { host_calls: 0 }) });
}}

struct Root {
    host_calls: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.host_calls = self
            .get_plugin_configuration()
            .and_then(|c| String::from_utf8(c).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass {
            host_calls: self.host_calls,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Pass {
    host_calls: u32,
}

impl Context for Pass {}

impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        for _ in 0..self.host_calls {
            std::hint::black_box(self.get_http_request_header("x-bench-absent"));
        }
        Action::Continue
    }
}
