package clickhouse

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/source"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestRenderDDLGolden pins the DDL of mapping.DefaultSchema in both
// dialects, on a single server and on a cluster (cluster-*.sql): go test
// ./sink/clickhouse -run TestRenderDDLGolden -update rewrites them.
func TestRenderDDLGolden(t *testing.T) {
	type golden struct {
		d    Dialect
		c    Cluster
		file string
	}
	var cases []golden
	for _, d := range []Dialect{Modern, Legacy} {
		cases = append(cases, golden{d, Cluster{}, string(d) + ".sql"},
			golden{d, Cluster{Name: "tributary_cluster", ReplicaPath: DefaultReplicaPath}, "cluster-" + string(d) + ".sql"})
	}
	for _, g := range cases {
		d := g.d
		got := strings.Join(RenderClusterDDL(mapping.DefaultSchema(), "tributary", d, g.c), ";\n\n") + ";\n"
		path := filepath.Join("testdata", g.file)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read golden file: %v (run with -update to create it)", err)
		}
		if got != string(want) {
			t.Errorf("%s DDL differs from %s (run with -update if the change is intended):\n%s", d, path, firstDiff(got, string(want)))
		}
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got %q\nwant %q", i+1, gl, wl)
		}
	}
	return "(no line differs)"
}

func TestRenderDDLShape(t *testing.T) {
	schema := mapping.DefaultSchema()
	tests := []struct {
		d          Dialect
		contains   []string
		notContain []string
	}{
		{Modern, []string{"timestamp DateTime64(3, 'UTC')", "LowCardinality(String)", "ORDER BY (tenant, type, timestamp, locator)", "\nCOMMENT '"},
			[]string{"timestamp_ms", "DateTime('UTC')"}},
		{Legacy, []string{"timestamp DateTime('UTC')", "timestamp_ms UInt16", "ORDER BY (tenant, type, timestamp, timestamp_ms, locator)"},
			[]string{"DateTime64", "LowCardinality", "\nCOMMENT '"}},
	}
	for _, tt := range tests {
		stmts := RenderDDL(schema, "db1", tt.d)
		if got, want := len(stmts), 1+len(schema.Tables)+len(schema.Views); got != want {
			t.Errorf("%s: %d statements, want %d", tt.d, got, want)
		}
		all := strings.Join(stmts, "\n")
		for _, s := range tt.contains {
			if !strings.Contains(all, s) {
				t.Errorf("%s DDL lacks %q", tt.d, s)
			}
		}
		for _, s := range tt.notContain {
			if strings.Contains(all, s) {
				t.Errorf("%s DDL contains %q", tt.d, s)
			}
		}
		if strings.Contains(all, "{db}") {
			t.Errorf("%s DDL still holds {db}", tt.d)
		}
	}
}

// TestDefaultSchemaOnServer creates mapping.DefaultSchema on each test
// server (legacy dialect on 18.16, modern on 26.7), writes mapped events twice
// and reads them back through the tables and both views.
func TestDefaultSchemaOnServer(t *testing.T) {
	testenv.ForEachClickHouse(t, testDefaultSchemaOnServer)
}

func testDefaultSchemaOnServer(t *testing.T, ch *testenv.ClickHouseServer) {
	s := newTestSink(t, ch, nil)
	ctx := testenv.Context(t, time.Minute)
	if err := s.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		t.Fatalf("Ensure(DefaultSchema): %v", err)
	}
	if err := s.Ensure(ctx, mapping.DefaultSchema()); err != nil { // existing tables pass the check
		t.Fatalf("second Ensure(DefaultSchema): %v", err)
	}
	batch := sampleBatch(200)
	for range 2 {
		rows := mapping.NewRows()
		mapping.Map(batch, mapping.Options{Pipeline: "test"}, rows)
		if err := s.Write(ctx, rows); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	var events, withMs uint64
	ms := "timestamp_ms"
	if s.Dialect() == Modern {
		ms = "toUnixTimestamp64Milli(timestamp) % 1000"
	}
	if err := ch.Conn.QueryRow(ctx, "SELECT count(), countIf("+ms+" != 0) FROM events FINAL").Scan(&events, &withMs); err != nil {
		t.Fatal(err)
	}
	if events != 200 || withMs == 0 {
		t.Errorf("events FINAL: %d rows, %d with milliseconds; want 200 and some", events, withMs)
	}
	var statuses, policies uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM policy_current_status").Scan(&statuses); err != nil {
		t.Fatalf("query policy_current_status: %v", err)
	}
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM event_policies FINAL").Scan(&policies); err != nil {
		t.Fatal(err)
	}
	if statuses == 0 || policies == 0 {
		t.Errorf("policy_current_status has %d rows, event_policies %d; want some of each", statuses, policies)
	}
	var endings uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM policy_endings").Scan(&endings); err != nil {
		t.Fatalf("query policy_endings: %v", err)
	}
	if endings == 0 {
		t.Errorf("policy_endings has no rows, want the policy.end events")
	}
	// Rejects, written twice (a replay), read back once each with their raw bytes.
	for range 2 {
		rows := mapping.NewRows()
		mapping.Map(rejectBatch(), mapping.Options{Pipeline: "test", Position: "tok-9"}, rows)
		if err := s.Write(ctx, rows); err != nil {
			t.Fatalf("write rejects: %v", err)
		}
	}
	var rejects, kinds uint64
	var raw, pos string
	if err := ch.Conn.QueryRow(ctx, "SELECT count(), uniqExact(kind), any(raw), any(source_position) FROM _tributary_rejects FINAL WHERE event_locator = '01JBADTIME' OR kind = 'missing_field'").Scan(&rejects, &kinds, &raw, &pos); err != nil {
		t.Fatalf("query _tributary_rejects: %v", err)
	}
	if rejects != 2 || kinds != 2 || pos != "tok-9" || !strings.Contains(raw, `"type":"policy.issue"`) {
		t.Errorf("_tributary_rejects FINAL: %d rows, %d kinds, raw %q, position %q; want 2, 2, the raw event, tok-9", rejects, kinds, raw, pos)
	}
}

// rejectBatch returns two events a source could not read, for the rejects table.
func rejectBatch() source.Batch {
	return source.Batch{Position: "tok-9", Events: []source.Event{
		{Tenant: "tenant-1", Flavor: source.FlavorSuite, Type: "policy.issue", Data: json.RawMessage(`{"type":"policy.issue","data":{}}`),
			Reject: mapping.RejectReason(mapping.RejectMissingField, "event lacks a locator")},
		{Locator: "01JBADTIME", Tenant: "tenant-1", Flavor: source.FlavorSuite, Type: "policy.issue", Seq: 7,
			Data: json.RawMessage(`{"locator":"01JBADTIME","timestamp":"yesterday"}`), Reject: mapping.RejectReason(mapping.RejectBadTime, `timestamp "yesterday"`)},
	}}
}

// sampleBatch returns n suite events cycling through a few types that fill
// every table: issues, status updates, endings and invoices.
func sampleBatch(n int) source.Batch {
	base := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	b := source.Batch{Position: "end"}
	for i := range n {
		pol := fmt.Sprintf("P%05d", i%50)
		var typ string
		var data any
		switch i % 4 {
		case 0:
			typ, data = "policy.issue", map[string]any{"policyLocator": pol, "transactionLocator": fmt.Sprintf("T%05d", i)}
		case 1:
			typ, data = "policy.status.update", map[string]any{"policyLocator": pol,
				"newStatuses":     map[string]any{"listCompleted": true, "items": []string{"onRisk"}},
				"removedStatuses": map[string]any{"listCompleted": true, "items": []string{"pending"}}}
		case 2:
			typ, data = "billing.invoice.create", map[string]any{"invoiceLocator": fmt.Sprintf("I%05d", i),
				"policyLocators": map[string]any{"listCompleted": true, "items": []string{pol}}}
		default:
			typ, data = "policy.end", map[string]any{"policyLocator": pol}
		}
		raw, _ := json.Marshal(data)
		ts := base.Add(time.Duration(i) * 1234 * time.Millisecond)
		b.Events = append(b.Events, source.Event{
			Locator: fmt.Sprintf("01J%023d", i), Tenant: "tenant-1", Type: typ, Timestamp: ts,
			Data: raw, Flavor: source.FlavorSuite, Seq: uint64(ts.UnixMilli()),
		})
	}
	return b
}
