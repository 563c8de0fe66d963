package mapping_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
)

// TestUpgradeFromPreviousRelease creates the previous release's schema
// (testdata/previous-*.sql: its DDL as `tributary schema` printed it), writes
// rows the way that release did, then lets the current sink ensure the
// current schema: the new columns are added and filled for the old rows
// (timestamp_unix_ms exact to the millisecond, from the _ms twin on legacy
// servers; actor from user_locator or username), the views whose
// definition changed are replaced, and new rows are written beside the old.
func TestUpgradeFromPreviousRelease(t *testing.T) {
	testenv.ForEachClickHouse(t, testUpgradeFromPreviousRelease)
}

func testUpgradeFromPreviousRelease(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, 2*time.Minute)
	dialect := "legacy"
	if ch.Modern() {
		dialect = "modern"
	}
	ddl, err := os.ReadFile("testdata/previous-" + dialect + ".sql")
	if err != nil {
		t.Fatal(err)
	}
	db := "`" + ch.Database + "`"
	for _, stmt := range strings.Split(string(ddl), ";\n") {
		stmt = strings.TrimSpace(stmt)
		if stmt == "" || strings.HasPrefix(stmt, "CREATE DATABASE") {
			continue
		}
		stmt = strings.ReplaceAll(stmt, "tributary.", db+".")
		if err := ch.Conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("previous DDL: %v\n%s", err, stmt)
		}
	}

	// What the previous release wrote: a suite status change at .250 and a
	// classic issue at .750 of the same second. (INSERT … SELECT: clickhouse-go
	// sends no VALUES to 18.16 through Exec.)
	tsCols := "timestamp"
	ts := func(milli int) string {
		return fmt.Sprintf("toDateTime64('2025-01-01 00:00:00.%03d', 3, 'UTC')", milli)
	}
	if dialect == "legacy" {
		tsCols = "timestamp, timestamp_ms"
		ts = func(milli int) string { return fmt.Sprintf("toDateTime('2025-01-01 00:00:00', 'UTC'), %d", milli) }
	}
	for _, q := range []string{
		`INSERT INTO events (locator, tenant, type, ` + tsCols + `, user_locator, username, flavor, policy_locator, policy_locators, new_statuses, _version)
		 SELECT 'E1', 'T', 'policy.status.update', ` + ts(250) + `, 'U-1', '', 'suite', 'P1', ['P1'], ['onRisk'], 2`,
		`INSERT INTO events (locator, tenant, type, ` + tsCols + `, user_locator, username, flavor, policy_locator, policy_locators, new_statuses, _version)
		 SELECT 'E2', 'C', 'policy.issue', ` + ts(750) + `, '', 'alice', 'classic', '100', ['100'], emptyArrayString(), 2`,
		`INSERT INTO event_policies (tenant, policy_locator, event_locator, type, ` + tsCols + `, flavor, _version)
		 SELECT 'T', 'P1', 'E1', 'policy.status.update', ` + ts(250) + `, 'suite', 2`,
		`INSERT INTO event_policies (tenant, policy_locator, event_locator, type, ` + tsCols + `, flavor, _version)
		 SELECT 'C', '100', 'E2', 'policy.issue', ` + ts(750) + `, 'classic', 2`,
		`INSERT INTO policy_status_changes (tenant, policy_locator, event_locator, status, change, ` + tsCols + `, type, list_complete, _version)
		 SELECT 'T', 'P1', 'E1', 'onRisk', 'added', ` + ts(250) + `, 'policy.status.update', 1, 2`,
	} {
		if err := ch.Conn.Exec(ctx, q); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}

	cfg := clickhouse.DefaultConfig()
	cfg.Addr = []string{ch.Addr}
	cfg.Database = ch.Database
	cfg.Settings = ch.Settings
	s, err := clickhouse.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for range 2 { // the second time finds nothing to change
		if err := s.Ensure(ctx, mapping.DefaultSchema()); err != nil {
			t.Fatalf("Ensure over the previous schema: %v", err)
		}
	}

	type old struct {
		Ms    int64
		Actor string
	}
	var got []old
	rs, err := ch.Conn.Query(ctx, "SELECT timestamp_unix_ms, actor FROM events FINAL ORDER BY locator")
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var o old
		if err := rs.Scan(&o.Ms, &o.Actor); err != nil {
			t.Fatal(err)
		}
		got = append(got, o)
	}
	rs.Close()
	second := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	if want := []old{{second + 250, "U-1"}, {second + 750, "alice"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("old events after the upgrade (timestamp_unix_ms, actor): got %v, want %v", got, want)
	}
	var psc, ep int64
	if err := ch.Conn.QueryRow(ctx, "SELECT sum(timestamp_unix_ms) FROM policy_status_changes FINAL").Scan(&psc); err != nil {
		t.Fatal(err)
	}
	if err := ch.Conn.QueryRow(ctx, "SELECT sum(timestamp_unix_ms) FROM event_policies FINAL").Scan(&ep); err != nil {
		t.Fatal(err)
	}
	if psc != second+250 || ep != 2*second+1000 {
		t.Errorf("timestamp_unix_ms backfilled: policy_status_changes %d, event_policies %d; want %d, %d", psc, ep, second+250, 2*second+1000)
	}

	// The replaced views read the old rows exactly, and new rows join them.
	e := source.Event{Locator: "E3", Tenant: "T", Type: "policy.status.update", Timestamp: time.UnixMilli(second + 500).UTC(),
		Data:   json.RawMessage(`{"policyLocator":"P1","newStatuses":{"listCompleted":true,"items":["expired"]},"removedStatuses":{"listCompleted":true,"items":["onRisk"]}}`),
		Flavor: source.FlavorSuite, Seq: uint64(second + 500)}
	rows := mapping.NewRows()
	mapping.Map(source.Batch{Events: []source.Event{e}}, mapping.Options{Pipeline: "p"}, rows)
	if err := s.Write(ctx, rows); err != nil {
		t.Fatalf("write after the upgrade: %v", err)
	}
	var statuses []string
	var changed int64
	if err := ch.Conn.QueryRow(ctx, "SELECT statuses, last_change_at_unix_ms FROM policy_current_status WHERE policy_locator = 'P1'").Scan(&statuses, &changed); err != nil {
		t.Fatalf("policy_current_status after the upgrade: %v", err)
	}
	if fmt.Sprint(statuses) != "[expired]" || changed != second+500 {
		t.Errorf("P1 after the upgrade: statuses %v at %d, want [expired] at %d", statuses, changed, second+500)
	}
	var classic []string
	if err := ch.Conn.QueryRow(ctx, "SELECT statuses FROM policies WHERE policy_locator = '100'").Scan(&classic); err != nil {
		t.Fatalf("policies after the upgrade: %v", err)
	}
	if fmt.Sprint(classic) != "[onRisk]" {
		t.Errorf("classic policy 100 after the upgrade: statuses %v, want [onRisk]", classic)
	}
}
