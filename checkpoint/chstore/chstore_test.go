package chstore

import (
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/internal/testenv"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
)

// storeConfig returns a ClickHouse configuration for ch's server and database.
func storeConfig(ch *testenv.ClickHouseServer) chsink.Config {
	cfg := chsink.DefaultConfig()
	cfg.Addr = []string{ch.Addr}
	cfg.Database = ch.Database
	cfg.Settings = ch.Settings
	return cfg
}

func TestSaveLoadReset(t *testing.T) {
	testenv.ForEachClickHouse(t, testSaveLoadReset)
}

func testSaveLoadReset(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	s := New(ch.Conn, ch.Database)
	defer s.Close()

	if _, found, err := s.Load(ctx, "a"); err != nil || found {
		t.Fatalf("Load before the table exists = found %v, %v; want none", found, err)
	}
	var tables uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", ch.Database, Table).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("Load created the checkpoint table; want Load without side effects")
	}

	at := time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)
	saves := []checkpoint.Checkpoint{
		{Pipeline: "a", Position: "tok-1", Events: 10, SavedAt: at},
		{Pipeline: "b", Position: "0/16B3748", Events: 5, SavedAt: at},
		{Pipeline: "a", Position: "tok-2", Events: 25, SavedAt: at.Add(1500 * time.Millisecond)},
		{Pipeline: "a", Position: "tok-3", Events: 40, SavedAt: at.Add(2 * time.Second)},
	}
	for _, cp := range saves {
		if err := s.Save(ctx, checkpoint.Lease{}, cp); err != nil {
			t.Fatalf("Save(%v): %v", cp, err)
		}
	}
	// A second store on its own connection (another process, a restart).
	s2, err := Open(ctx, storeConfig(ch))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	tests := []struct {
		pipeline  string
		want      checkpoint.Checkpoint
		wantFound bool
	}{
		{"a", saves[3], true},
		{"b", saves[1], true},
		{"c", checkpoint.Checkpoint{}, false},
	}
	for _, tt := range tests {
		got, found, err := s2.Load(ctx, tt.pipeline)
		if err != nil || found != tt.wantFound || !got.SavedAt.Equal(tt.want.SavedAt) || got.Position != tt.want.Position ||
			got.Events != tt.want.Events || got.Pipeline != tt.want.Pipeline {
			t.Errorf("Load(%s) = %+v, %v, %v; want %+v, %v", tt.pipeline, got, found, err, tt.want, tt.wantFound)
		}
	}

	if err := s2.Reset(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.Load(ctx, "a"); err != nil || found {
		t.Errorf("Load(a) after Reset = found %v, %v; want none", found, err)
	}
	if got, found, _ := s.Load(ctx, "b"); !found || got.Position != "0/16B3748" {
		t.Errorf("Load(b) after Reset(a) = %+v, %v; want position 0/16B3748", got, found)
	}
	// A save after the reset brings the pipeline back.
	if err := s.Save(ctx, checkpoint.Lease{}, checkpoint.Checkpoint{Pipeline: "a", Position: "tok-9", Events: 1}); err != nil {
		t.Fatal(err)
	}
	if got, found, err := s2.Load(ctx, "a"); err != nil || !found || got.Position != "tok-9" {
		t.Errorf("Load(a) after a new save = %+v, %v, %v; want tok-9", got, found, err)
	}
}

// TestMonotonicAcrossRestartsAndClockSteps saves from stores whose clocks go
// backwards; the latest save must still win.
func TestMonotonicAcrossRestartsAndClockSteps(t *testing.T) {
	testenv.ForEachClickHouse(t, testMonotonicAcrossRestartsAndClockSteps)
}

func testMonotonicAcrossRestartsAndClockSteps(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	clocks := []time.Time{
		time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), // a clock far ahead
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), // after a restart the clock is back
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), // the same instant again
		time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i, clock := range clocks {
		s := New(ch.Conn, ch.Database) // a fresh store: a restarted process
		s.now = func() time.Time { return clock }
		for j := range 3 {
			pos := string(rune('A'+i)) + string(rune('0'+j))
			if err := s.Save(ctx, checkpoint.Lease{}, checkpoint.Checkpoint{Pipeline: "p", Position: source.Position(pos), Events: uint64(i*3 + j)}); err != nil {
				t.Fatal(err)
			}
			got, found, err := New(ch.Conn, ch.Database).Load(ctx, "p")
			if err != nil || !found || string(got.Position) != pos {
				t.Fatalf("after save %s with clock %s: Load = %+v, %v, %v; want position %s", pos, clock, got, found, err, pos)
			}
		}
	}
}

func TestEnsureIsIdempotent(t *testing.T) {
	testenv.ForEachClickHouse(t, testEnsureIsIdempotent)
}

func testEnsureIsIdempotent(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	for range 2 {
		if err := New(ch.Conn, ch.Database).Ensure(ctx); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}
	var engine string
	if err := ch.Conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", ch.Database, Table).Scan(&engine); err != nil {
		t.Fatal(err)
	}
	if engine != "ReplacingMergeTree" {
		t.Errorf("checkpoint table engine = %s, want ReplacingMergeTree", engine)
	}
}

// TestSaveIsSynchronous: under a profile with async_insert=1 and
// wait_for_async_insert=0 (the test bed's user "async"), a checkpoint's
// INSERT still runs with the sink's pinned settings, so Save returns only
// once the row is stored; the server's query log shows the settings it ran
// with (see the sink's TestInsertsAreSynchronous).
func TestSaveIsSynchronous(t *testing.T) {
	testenv.ForEachClickHouse(t, testSaveIsSynchronous)
}

func testSaveIsSynchronous(t *testing.T, ch *testenv.ClickHouseServer) {
	if !ch.Modern() || !ch.FromTestBed() {
		t.Skip("needs the test bed's modern server and its user async (18.16 has no asynchronous inserts)")
	}
	ctx := testenv.Context(t, time.Minute)
	cfg := storeConfig(ch)
	cfg.User = "async"
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Save(ctx, checkpoint.Lease{}, checkpoint.Checkpoint{Pipeline: "p", Position: "tok-1", Events: 1}); err != nil {
		t.Fatal(err)
	}
	if got, found, err := New(ch.Conn, ch.Database).Load(ctx, "p"); err != nil || !found || got.Position != "tok-1" {
		t.Errorf("Load right after Save = %+v, %v, %v; want tok-1", got, found, err)
	}
	if err := ch.Conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		t.Fatal(err)
	}
	var async, wait string
	if err := ch.Conn.QueryRow(ctx, `SELECT Settings['async_insert'], Settings['wait_for_async_insert'] FROM system.query_log
		WHERE type = 'QueryFinish' AND query_kind = 'Insert' AND user = 'async' AND has(tables, ?)`, ch.Database+"."+Table).Scan(&async, &wait); err != nil {
		t.Fatalf("the checkpoint INSERT in the query log: %v", err)
	}
	if async != "0" || wait != "1" {
		t.Errorf("the checkpoint INSERT ran with async_insert=%s wait_for_async_insert=%s, want 0 and 1", async, wait)
	}
}
