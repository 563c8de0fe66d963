#!/usr/bin/env bash
# demo.sh — `make demo`: tributary end to end on this machine. It starts a private
# ClickHouse (installing it from Debian's packages when missing), the built-in
# emulator of the event stream, and `tributary run` against them; waits until
# the whole history is replicated; prints what an analyst would look at first;
# then stops everything it started — or, with DEMO_KEEP=1, leaves ClickHouse
# running with the data and says how to connect, what to query and how to stop
# it. Needs bin/tributary (make build).
#
# Knobs (documented in README.md): DEMO_EVENTS (events to generate, default
# 50000), DEMO_POLICIES (policies the simulation keeps in force at a time,
# default 1000; as policies end and new ones are written, the history holds
# more), DEMO_FLAVOR (suite or classic, default suite), DEMO_SEED (default 1),
# DEMO_KEEP (1: leave ClickHouse running with the data).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${TRIBUTARY_BIN:-bin/tributary}
[ -x "$bin" ] || { echo "demo: $bin is missing: run 'make build' first" >&2; exit 1; }

if [ -z "${TRIBUTARY_TEST_CLICKHOUSE_ADDR:-}" ]; then
	# Re-run this script inside a private ClickHouse; with DEMO_KEEP=1 the
	# test bed leaves it running after a successful demo.
	if [ "${DEMO_KEEP:-0}" = 1 ]; then
		export TRIBUTARY_TESTBED_KEEP=1
	fi
	exec bash scripts/testbed.sh --no-postgres --no-modern --no-cluster -- bash "$0" "$@"
fi

events=${DEMO_EVENTS:-50000}
policies=${DEMO_POLICIES:-1000}
flavor=${DEMO_FLAVOR:-suite}
seed=${DEMO_SEED:-1}
tenant=7d2f8c3e-5b1a-4c6e-9f0d-2a4b6c8e0f13
ch_port=${TRIBUTARY_TEST_CLICKHOUSE_ADDR##*:}
ch_query() { clickhouse-client --host 127.0.0.1 --port "$ch_port" --database demo --format PrettyCompactNoEscapes --query "$1"; }

free_port() {
	local p
	while :; do
		p=$(( (RANDOM * 32768 + RANDOM) % 30000 + 20000 ))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

work=$(mktemp -d "${TMPDIR:-/tmp}/tributary-demo.XXXXXX")
emu_pid=""
cleanup() {
	[ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

emu_port=$(free_port)
begin=$(date +%s)
echo "demo: starting the emulator ($flavor flavor, seed $seed: at least $events events, $policies policies in force at a time) on 127.0.0.1:$emu_port"
"$bin" emulate --emulator.flavor "$flavor" --emulator.tenant "$tenant" --emulator.events "$events" \
	--emulator.policies "$policies" --emulator.seed "$seed" --web.listen-address "127.0.0.1:$emu_port" \
	>"$work/emulator.log" 2>&1 &
emu_pid=$!
for _ in $(seq 1 300); do
	(exec 3<>"/dev/tcp/127.0.0.1/$emu_port") 2>/dev/null && break
	kill -0 "$emu_pid" 2>/dev/null || { cat "$work/emulator.log" >&2; echo "demo: the emulator failed" >&2; exit 1; }
	sleep 0.1
done
# What was generated, from the emulator's own log line.
field() { grep -m1 '"msg":"emulator listening"' "$work/emulator.log" | grep -o "\"$1\":[^,}]*" | sed 's/^[^:]*://; s/"//g'; }
generated=$(field events)
echo "demo: the emulator generated $generated events, from $(field first_event) to $(field last_event) (the start is chosen so that the history ends before now)"

# --api.end makes the run stop by itself once it has caught up with the history.
echo "demo: replicating into ClickHouse database 'demo' (tributary run)"
"$bin" run --source api --api.flavor "$flavor" --api.url "http://127.0.0.1:$emu_port" --api.tenant "$tenant" \
	--api.start 2000-01-01T00:00:00Z --api.end "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --enrich.policy-locators="$([ "$flavor" = suite ] && echo true || echo false)" \
	--clickhouse.addr "$TRIBUTARY_TEST_CLICKHOUSE_ADDR" --clickhouse.database demo \
	--pipeline.name demo --web.listen-address "" --log.format text >"$work/run.log" 2>&1 ||
	{ cat "$work/run.log" >&2; echo "demo: tributary run failed" >&2; exit 1; }
took=$(( $(date +%s) - begin ))
grep -E "level=(INFO|WARN|ERROR)" "$work/run.log" | sed 's/^/  | /' | tail -n 8

echo
echo "== Replicated in ${took}s: events in ClickHouse (deduplicated with FINAL; the emulator generated $generated)"
ch_query "SELECT count() AS events, uniqExactIf(policy_locator, policy_locator != '') AS policies_in_history, min(timestamp) AS first_event, max(timestamp) AS last_event FROM events FINAL"
echo "(policies_in_history counts every policy the history touched: $policies are kept in force at a time, and ended ones are replaced)"
echo
echo "== Events by type (top 12)"
ch_query "SELECT type, count() AS events FROM events FINAL GROUP BY type ORDER BY events DESC, type LIMIT 12"
echo
echo "== Policies by current status (classic statuses are derived from its events; see docs/schema.md)"
ch_query "SELECT status, count() AS policies FROM policy_current_status ARRAY JOIN statuses AS status GROUP BY status ORDER BY policies DESC"
echo
echo "== Invoices per month (last 12 months of the history)"
ch_query "SELECT month, invoices FROM (SELECT toStartOfMonth(timestamp) AS month, uniqExact(invoice_locator) AS invoices FROM events FINAL WHERE type IN ('billing.invoice.generate', 'invoice.issue') GROUP BY month ORDER BY month DESC LIMIT 12) ORDER BY month"
echo
echo "== Policy endings: lapses vs manual cancellations vs expiries"
ch_query "SELECT countIf(kind = 'lapse') AS lapses, countIf(kind = 'manual_cancellation') AS manual_cancellations, countIf(kind = 'expiry') AS expiries FROM policy_endings"
echo
if [ "${TRIBUTARY_TESTBED_KEEP:-0}" = 1 ]; then
	cat <<EOF
demo: done in $(( $(date +%s) - begin ))s; stopping the emulator. ClickHouse keeps running with the data (DEMO_KEEP=1).

Connect:
  clickhouse-client --host 127.0.0.1 --port $ch_port --database demo

Three queries to try (from docs/schema.md):
  SELECT tenant, flavor, count() AS in_force FROM policies WHERE has(statuses, 'onRisk') GROUP BY tenant, flavor
  SELECT ending_kind, count() AS policies, round(avg((assumeNotNull(ended_at_unix_ms) - assumeNotNull(issued_at_unix_ms)) / 86400000), 1) AS mean_days FROM policies WHERE ending_kind IS NOT NULL AND issued_at_unix_ms IS NOT NULL GROUP BY ending_kind
  SELECT outcome, count() AS delinquencies FROM delinquencies GROUP BY outcome

The pipeline's own view:
  $bin status --clickhouse.addr 127.0.0.1:$ch_port --clickhouse.database demo

Stop ClickHouse and remove its data with:
  bash $TRIBUTARY_TESTBED_STOP
EOF
else
	echo "demo: done in $(( $(date +%s) - begin ))s; stopping the emulator and ClickHouse (DEMO_KEEP=1 leaves ClickHouse running with the data)"
fi
