package clickhouse

import (
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
)

// TestEnsureReplacesChangedViews: a view created by an earlier release (or by
// hand) with another definition is replaced by Ensure; a view of this
// release's definition is left alone; without CreateSchema an outdated view
// is kept as it is.
func TestEnsureReplacesChangedViews(t *testing.T) {
	testenv.ForEachClickHouse(t, testEnsureReplacesChangedViews)
}

func testEnsureReplacesChangedViews(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	schema := testSchema()
	view := schema.Views[0]
	definition := func() string {
		t.Helper()
		var q string
		if err := ch.Conn.QueryRow(ctx, "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", ch.Database, view.Name).Scan(&q); err != nil {
			t.Fatal(err)
		}
		return q
	}
	columns := func() string {
		t.Helper()
		var cols []string
		rows, err := ch.Conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = ? ORDER BY name", ch.Database, view.Name)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			cols = append(cols, c)
		}
		return strings.Join(cols, ",")
	}

	// The previous definition: without kind.
	s := newTestSink(t, ch, nil)
	if err := s.Ensure(ctx, schema); err != nil {
		t.Fatal(err)
	}
	if err := ch.Conn.Exec(ctx, "DROP TABLE "+view.Name); err != nil {
		t.Fatal(err)
	}
	if err := ch.Conn.Exec(ctx, "CREATE VIEW "+view.Name+" AS SELECT id, ts FROM things FINAL"); err != nil {
		t.Fatal(err)
	}

	kept := newTestSink(t, ch, func(c *Config) { c.CreateSchema = false })
	if err := kept.Ensure(ctx, schema); err != nil {
		t.Fatal(err)
	}
	if got := columns(); got != "id,ts" {
		t.Errorf("without CreateSchema the outdated view has columns %s, want it kept (id,ts)", got)
	}

	if err := s.Ensure(ctx, schema); err != nil {
		t.Fatal(err)
	}
	if got := columns(); got != "id,kind,ts" {
		t.Errorf("after Ensure the view has columns %s, want this release's (id,kind,ts)", got)
	}
	replaced := definition()
	if !strings.Contains(replaced, viewMarker(view, schema.Tables, Cluster{})) {
		t.Errorf("the replaced view's stored definition lacks its fingerprint %s:\n%s", viewMarker(view, schema.Tables, Cluster{}), replaced)
	}
	// Up to date: a second Ensure finds the fingerprint and changes nothing
	// (on modern servers a view created again would get another uuid).
	identity := func() string {
		t.Helper()
		if !ch.Modern() {
			return ""
		}
		var id string
		if err := ch.Conn.QueryRow(ctx, "SELECT toString(uuid) FROM system.tables WHERE database = ? AND name = ?", ch.Database, view.Name).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	before := identity()
	if err := ch.Conn.Exec(ctx, "INSERT INTO things (id, kind, ts, version) SELECT 'x', 'k', now(), 1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(ctx, schema); err != nil {
		t.Fatal(err)
	}
	if got, id := definition(), identity(); got != replaced || id != before {
		t.Errorf("a view already up to date was created again (uuid %s, was %s):\n%s\nwas\n%s", id, before, got, replaced)
	}
	var n uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM "+view.Name).Scan(&n); err != nil || n != 1 {
		t.Errorf("the view reads %d rows (%v), want 1", n, err)
	}
}
