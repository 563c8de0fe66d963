// Package e2e runs the tributary binary against the emulator and the real
// servers: the proofs of no loss and no duplicates across crashes.
package e2e

import (
	"context"
	"log/slog"
	"testing"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
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
func writeExpected(t *testing.T, ch *testenv.ClickHouseServer, db string, events []source.Event) {
	t.Helper()
	ctx := context.Background()
	cfg := chsink.DefaultConfig()
	cfg.Addr = []string{ch.Addr}
	cfg.Database = db
	cfg.Settings = ch.Settings
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

// tableNames lists the schema's tables.
func tableNames() []string {
	var names []string
	for _, t := range mapping.DefaultSchema().Tables {
		names = append(names, t.Name)
	}
	return names
}
