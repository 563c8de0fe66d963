package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tributary-cdc/tributary/internal/testenv"
)

// TestSmokePostgres proves the PostgreSQL half of the test bed: a publication
// and a pgoutput slot, rows inserted, then received and decoded with pglogrepl.
func TestSmokePostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := testenv.Context(t, time.Minute)
	pub, slot := testenv.Name("pub_"), testenv.Name("slot_")
	for _, q := range []string{
		"CREATE TABLE smoke (id bigint PRIMARY KEY, name text NOT NULL)",
		"CREATE PUBLICATION " + pub + " FOR TABLE smoke",
	} {
		if _, err := pg.Conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rc, err := pgconn.Connect(ctx, testenv.ReplicationDSN(pg.DSN))
	if err != nil {
		t.Fatalf("replication connection: %v", err)
	}
	defer rc.Close(context.Background())
	created, err := pglogrepl.CreateReplicationSlot(ctx, rc, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{})
	if err != nil {
		t.Fatalf("create slot: %v", err)
	}
	start, err := pglogrepl.ParseLSN(created.ConsistentPoint)
	if err != nil {
		t.Fatalf("parse consistent point %q: %v", created.ConsistentPoint, err)
	}
	const n = 50
	for i := 1; i <= n; i++ {
		if _, err := pg.Conn.Exec(ctx, "INSERT INTO smoke (id, name) VALUES ($1, $2)", i, fmt.Sprintf("row-%d", i)); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	err = pglogrepl.StartReplication(ctx, rc, slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pub + "'"},
	})
	if err != nil {
		t.Fatalf("start replication: %v", err)
	}
	relations := map[uint32]*pglogrepl.RelationMessage{}
	got := map[string]string{}
	for len(got) < n {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := rc.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			t.Fatalf("receive after %d rows: %v", len(got), err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok || len(cd.Data) == 0 || cd.Data[0] != pglogrepl.XLogDataByteID {
			continue
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			t.Fatalf("parse XLogData: %v", err)
		}
		lm, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			t.Fatalf("decode pgoutput: %v", err)
		}
		switch m := lm.(type) {
		case *pglogrepl.RelationMessage:
			relations[m.RelationID] = m
		case *pglogrepl.InsertMessage:
			rel := relations[m.RelationID]
			if rel == nil || rel.RelationName != "smoke" {
				t.Fatalf("insert for unknown relation %d", m.RelationID)
			}
			got[string(m.Tuple.Columns[0].Data)] = string(m.Tuple.Columns[1].Data)
		}
	}
	for i := 1; i <= n; i++ {
		if g, w := got[fmt.Sprint(i)], fmt.Sprintf("row-%d", i); g != w {
			t.Errorf("row %d: got %q, want %q", i, g, w)
		}
	}
	rc.Close(ctx)
	// The server's walsender may outlive the closed connection for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := pg.Conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop slot: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var left int
	if err := pg.Conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&left); err != nil || left != 0 {
		t.Fatalf("slot still present (%d, %v)", left, err)
	}
}
