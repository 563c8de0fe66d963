package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
)

func TestSchemaCommand(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    []string
		wantNotOut []string
	}{
		{"modern by default", []string{"schema"}, 0,
			[]string{"CREATE DATABASE IF NOT EXISTS tributary;", "timestamp DateTime64(3, 'UTC')", "CREATE VIEW IF NOT EXISTS tributary.policy_endings", "tributary._tributary_checkpoints"},
			[]string{"timestamp_ms"}},
		{"legacy", []string{"schema", "--dialect", "legacy"}, 0,
			[]string{"timestamp DateTime('UTC')", "timestamp_ms UInt16", "-- tributary schema: dialect legacy"},
			[]string{"DateTime64", "LowCardinality"}},
		{"database", []string{"schema", "--clickhouse.database=analytics"}, 0,
			[]string{"CREATE DATABASE IF NOT EXISTS analytics;", "analytics.events", "FROM analytics.events FINAL"},
			[]string{"tributary.", "{db}"}},
		{"cluster", []string{"schema", "--cluster", "prod", "--dialect", "legacy"}, 0,
			[]string{"-- tributary schema: dialect legacy, database tributary, cluster prod", "CREATE DATABASE IF NOT EXISTS tributary ON CLUSTER prod;",
				"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tributary/events', '{replica}', _version)",
				"CREATE TABLE IF NOT EXISTS tributary.events_all ON CLUSTER prod AS tributary.events\nENGINE = Distributed(prod, tributary, events, cityHash64(tenant, locator))",
				"FROM tributary.events_all FINAL", "GLOBAL ANY LEFT JOIN",
				"tributary._tributary_checkpoints ON CLUSTER prod", "ReplicatedReplacingMergeTree('/clickhouse/tables/all/tributary/_tributary_checkpoints', '{replica}', seq)"},
			[]string{"COMMENT", "{db}", "{global}", "{database}"}},
		{"cluster replica path", []string{"schema", "--cluster", "prod", "--replica-path", "/t/{uuid}/{table}"}, 0,
			[]string{"ReplicatedReplacingMergeTree('/t/{uuid}/events', '{replica}', _version)", "COMMENT"}, nil},
		{"bad replica path", []string{"schema", "--cluster", "prod", "--replica-path", "t/{table}"}, 2, []string{"--clickhouse.replica-path", "must start with /"}, nil},
		{"help", []string{"schema", "--help"}, 0, []string{"--dialect", "TRIBUTARY_DIALECT", "--cluster"}, nil},
		{"unknown dialect", []string{"schema", "--dialect", "ancient"}, 2, []string{"--dialect", "ancient"}, nil},
		{"bad database", []string{"schema", "--clickhouse.database", "no-dashes"}, 2, []string{"--clickhouse.database"}, nil},
		{"stray argument", []string{"schema", "now"}, 2, []string{"unexpected arguments"}, nil},
		{"unknown flag", []string{"schema", "--clickhouse.addr=x:1"}, 2, []string{"unknown flag"}, nil},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := dispatch(tt.args, &out, &errOut)
		if code != tt.wantCode {
			t.Errorf("%s: exit code %d, want %d (stderr %q)", tt.name, code, tt.wantCode, errOut.String())
		}
		got := out.String() + errOut.String()
		for _, w := range tt.wantOut {
			if !strings.Contains(got, w) {
				t.Errorf("%s: output lacks %q", tt.name, w)
			}
		}
		for _, w := range tt.wantNotOut {
			if strings.Contains(got, w) {
				t.Errorf("%s: output contains %q", tt.name, w)
			}
		}
	}
}

// TestSchemaCommandRunsOnServer runs the printed DDL of each server's dialect
// (legacy on 18.16, modern on 26.7) on that server, twice: every statement is
// valid and idempotent there.
func TestSchemaCommandRunsOnServer(t *testing.T) {
	testenv.ForEachClickHouse(t, testSchemaCommandRunsOnServer)
}

func testSchemaCommandRunsOnServer(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	db := testenv.Name("schema_")
	t.Cleanup(func() { _ = ch.Conn.Exec(testenv.Context(t, 30*time.Second), "DROP DATABASE IF EXISTS "+db) })
	dialect := "legacy"
	if ch.Modern() {
		dialect = "modern"
	}
	var out, errOut bytes.Buffer
	if code := dispatch([]string{"schema", "--dialect=" + dialect, "--clickhouse.database=" + db}, &out, &errOut); code != 0 {
		t.Fatalf("schema exited %d: %s", code, errOut.String())
	}
	stmts := strings.Split(strings.TrimSuffix(out.String(), ";\n"), ";\n\n")
	for range 2 {
		for _, s := range stmts {
			s = strings.TrimSpace(s)
			if strings.HasPrefix(s, "-- ") { // the header line
				_, s, _ = strings.Cut(s, "\n")
			}
			if err := ch.Conn.Exec(ctx, s); err != nil {
				t.Fatalf("statement failed: %v\n%s", err, s)
			}
		}
	}
	var tables uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ?", db).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if got, want := tables, uint64(6+len(mapping.DefaultSchema().Views)); got != want { // 4 tables (rejects included), the views, the checkpoint and look-up tables
		t.Errorf("tables and views created = %d, want %d", got, want)
	}
}

// TestSchemaCommandRunsOnCluster runs the printed cluster DDL (legacy, on the
// test bed's 18.16 cluster of two shards) on one node, twice: every
// statement is valid and idempotent, and every node then has the tables,
// the Distributed tables, the views and the checkpoint table.
func TestSchemaCommandRunsOnCluster(t *testing.T) {
	c := testenv.Cluster(t, "tributary_2x1")
	ctx := testenv.Context(t, 3*time.Minute)
	var out, errOut bytes.Buffer
	if code := dispatch([]string{"schema", "--dialect=legacy", "--clickhouse.database=" + c.Database, "--cluster", c.Name}, &out, &errOut); code != 0 {
		t.Fatalf("schema exited %d: %s", code, errOut.String())
	}
	conn := c.Open(t, 0)
	stmts := strings.Split(strings.TrimSuffix(out.String(), ";\n"), ";\n\n")
	for range 2 {
		for _, s := range stmts {
			s = strings.TrimSpace(s)
			if strings.HasPrefix(s, "-- ") {
				_, s, _ = strings.Cut(s, "\n")
			}
			if err := conn.Exec(ctx, s); err != nil {
				t.Fatalf("statement failed: %v\n%s", err, s)
			}
		}
	}
	for i := range c.Nodes {
		var tables uint64
		if err := c.Open(t, i).QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ?", c.Database).Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if got, want := tables, uint64(10+len(mapping.DefaultSchema().Views)); got != want { // 4 tables, 4 Distributed, the views, the checkpoint and look-up tables
			t.Errorf("node %d: tables and views = %d, want %d", i, got, want)
		}
	}
}
