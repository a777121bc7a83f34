#!/usr/bin/env bash
# `make run` / `make run-module`: checks the config against this environment the way the filter
# will (`tollgate check --env`), renders Envoy's bootstrap, starts Envoy with its log in a file, and
# says in one line when the gateway is ready. A config the filter would refuse (a secret's variable
# unset, an invalid field) stops here with check's list of errors, before Envoy starts.
#
# Settings come from the environment (the Makefile passes its own):
#   CONFIG, CLI, ENVOY, LISTEN, ADMIN, CONCURRENCY, FILTER (--wasm or --module), FILTER_PATH,
#   OUT (where the bootstrap and Envoy's log go), READY_TIMEOUT (seconds).
set -u

CONFIG=${CONFIG:-examples/gateway.yaml}
CLI=${CLI:-target/debug/tollgate}
ENVOY=${ENVOY:-.venv/bin/envoy}
LISTEN=${LISTEN:-127.0.0.1:4000}
ADMIN=${ADMIN:-127.0.0.1:9901}
CONCURRENCY=${CONCURRENCY:-2}
FILTER=${FILTER:---wasm}
FILTER_PATH=${FILTER_PATH:-$PWD/target/wasm32-wasip1/release/tollgate.wasm}
OUT=${OUT:-build}
READY_TIMEOUT=${READY_TIMEOUT:-60}

case $FILTER in
  --wasm) name=envoy form=".wasm" ;;
  --module) name=envoy-module form="dynamic module" ;;
  *) echo "tollgate: FILTER must be --wasm or --module, not '$FILTER'" >&2; exit 2 ;;
esac
bootstrap=$OUT/$name.yaml
log=$OUT/$name.log
mkdir -p "$OUT" || exit 1

if ! report=$("$CLI" check "$CONFIG" --env 2>&1); then
  # Only the errors (the reason it stops) and check's summary line.
  grep -v '^warning: ' <<<"$report" >&2
  echo "tollgate: not starting Envoy; fix the above (or export the variables) and run again" >&2
  exit 1
fi
warnings=$(grep -c '^warning: ' <<<"$report")
if ((warnings == 0)); then
  warnings="no config warnings"
else
  warnings="$warnings config warning(s), \`tollgate check $CONFIG\` lists them"
fi

"$CLI" render "$CONFIG" --listen "$LISTEN" --admin "$ADMIN" "$FILTER" "$FILTER_PATH" \
  -o "$bootstrap" || exit 1

"$ENVOY" -c "$bootstrap" --concurrency "$CONCURRENCY" --use-dynamic-base-id -l info \
  >"$log" 2>&1 &
envoy=$!
stop() {
  kill -TERM "$envoy" 2>/dev/null
  wait "$envoy" 2>/dev/null
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

# What says why Envoy stopped, out of its log (the whole of it is in the file).
why() {
  grep -E 'tollgate config error|refusing to start|\[critical\]|\[error\]' "$log" | tail -n 20 >&2
}

deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS -o /dev/null --max-time 1 "http://$ADMIN/ready" 2>/dev/null; do
  if ! kill -0 "$envoy" 2>/dev/null; then
    wait "$envoy"
    status=$?
    why
    echo "tollgate: Envoy exited (status $status) before it was ready; its log is $log" >&2
    exit "$((status == 0 ? 1 : status))"
  fi
  if ((SECONDS >= deadline)); then
    why
    echo "tollgate: Envoy was not ready after ${READY_TIMEOUT}s; its log is $log" >&2
    exit 1
  fi
  sleep 0.2
done

echo "tollgate: ready on http://$LISTEN/v1 ($form; admin http://$ADMIN; $warnings; Envoy's log: $log; Ctrl-C stops it)"

wait "$envoy"
status=$?
why
echo "tollgate: Envoy exited (status $status); its log is $log" >&2
exit "$status"
