package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/mapping"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
)

// toSource converts the emulator's events to the source form, as a client of
// the given flavor's event-stream API receives them: the classic
// transactionId travels only in webhook bodies, not in the stream.
func toSource(evs []emulator.Event, flavor string) []source.Event {
	out := make([]source.Event, len(evs))
	for i, e := range evs {
		e.TransactionID = ""
		out[i] = source.Event{
			Locator: e.Locator, RequestID: e.RequestID, UserLocator: e.UserLocator,
			Username: e.Username, TransactionID: e.TransactionID, Tenant: e.Tenant,
			Type: e.Type, Timestamp: e.Timestamp, Data: e.Data, Flavor: flavor,
			Seq: uint64(e.Timestamp.UnixMilli()),
		}
	}
	return out
}

// writeExpected maps events with the production mapping and writes them into a
// fresh database through the sink: the reference the replicated database must
// equal, table by table.
func writeExpected(t *testing.T, addr, db string, events []source.Event) {
	t.Helper()
	ctx := context.Background()
	cfg := chsink.DefaultConfig()
	cfg.Addr = []string{addr}
	cfg.Database = db
	snk, err := chsink.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("expected sink: %v", err)
	}
	defer snk.Close()
	if err := snk.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		t.Fatalf("expected schema: %v", err)
	}
	for start := 0; start < len(events); start += 20000 {
		end := min(start+20000, len(events))
		rows := mapping.NewRows()
		mapping.Map(source.Batch{Events: events[start:end]}, mapping.Options{Pipeline: "expected"}, rows)
		if err := snk.Write(ctx, rows); err != nil {
			t.Fatalf("write expected rows: %v", err)
		}
	}
}

// dataColumns lists the columns of db.table that carry data, leaving out the
// bookkeeping columns (_source, _position, _version, _ingested_at).
func dataColumns(t *testing.T, conn driver.Conn, db, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT name FROM system.columns WHERE database = ? AND table = ? ORDER BY name", db, table)
	if err != nil {
		t.Fatalf("columns of %s.%s: %v", db, table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(n, "_") {
			cols = append(cols, n)
		}
	}
	if len(cols) == 0 {
		t.Fatalf("%s.%s has no data columns", db, table)
	}
	return cols
}

// fingerprint is a table's deduplicated row count and an order-independent
// checksum of every data column of every row.
type fingerprint struct{ Rows, Sum uint64 }

func tableFingerprint(t *testing.T, conn driver.Conn, db, table string, cols []string) fingerprint {
	t.Helper()
	var f fingerprint
	q := fmt.Sprintf("SELECT count(), sum(cityHash64(%s)) FROM %s.%s FINAL", strings.Join(cols, ", "), db, table)
	if err := conn.QueryRow(context.Background(), q).Scan(&f.Rows, &f.Sum); err != nil {
		t.Fatalf("fingerprint of %s.%s: %v", db, table, err)
	}
	return f
}

// assertSameTables fails unless every table of the schema holds the same rows
// (data columns, after deduplication) in both databases.
func assertSameTables(t *testing.T, conn driver.Conn, gotDB, wantDB string) {
	t.Helper()
	for _, tbl := range mapping.DefaultSchema().Tables {
		cols := dataColumns(t, conn, wantDB, tbl.Name)
		got := tableFingerprint(t, conn, gotDB, tbl.Name, cols)
		want := tableFingerprint(t, conn, wantDB, tbl.Name, cols)
		if got != want {
			t.Errorf("table %s: got %d rows (checksum %d), want %d rows (checksum %d)", tbl.Name, got.Rows, got.Sum, want.Rows, want.Sum)
			for _, c := range cols {
				if g, w := tableFingerprint(t, conn, gotDB, tbl.Name, []string{c}), tableFingerprint(t, conn, wantDB, tbl.Name, []string{c}); g != w {
					t.Errorf("table %s: column %s differs", tbl.Name, c)
				}
			}
		} else {
			t.Logf("table %s: %d rows, identical", tbl.Name, got.Rows)
		}
	}
}

// countEvents returns the deduplicated number of events in db.
func countEvents(ctx context.Context, conn driver.Conn, db string) (uint64, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".events FINAL").Scan(&n)
	return n, err
}

// waitEvents polls until db holds want events or the timeout passes.
func waitEvents(t *testing.T, conn driver.Conn, db string, want uint64, timeout time.Duration, alive func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var n uint64
	for time.Now().Before(deadline) {
		var err error
		n, err = countEvents(context.Background(), conn, db)
		if err == nil && n >= want {
			return
		}
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("waiting for %d events (have %d): %v", want, n, err)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %d events in %s (have %d)", timeout, want, db, n)
}
