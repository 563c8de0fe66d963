package chstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/checkpoint/storetest"
	"github.com/tributary-cdc/tributary/internal/fault"
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

// lazy returns a store with a connection of its own (another process).
func lazy(t *testing.T, ch *testenv.ClickHouseServer) *Store {
	t.Helper()
	s, err := NewLazy(storeConfig(ch))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance plays the scenarios every store passes; the stores of a
// scenario alternate between the test's connection and connections of
// their own.
func TestConformance(t *testing.T) {
	testenv.ForEachClickHouse(t, func(t *testing.T, ch *testenv.ClickHouseServer) {
		n := 0
		storetest.Run(t, testenv.Context(t, 2*time.Minute), func(t *testing.T) checkpoint.Store {
			n++
			if n%2 == 0 {
				return lazy(t, ch)
			}
			return New(ch.Conn, ch.Database)
		})
	})
}

// insertRow writes a row directly, as a process of another version or a
// stale process would.
func insertRow(t *testing.T, ctx context.Context, ch *testenv.ClickHouseServer, pipeline, position string, events, seq uint64, deleted uint8, generation uint64) {
	t.Helper()
	insert(t, ctx, ch, "pipeline, position, events, saved_at, saved_at_ms, seq, deleted, generation",
		pipeline, position, events, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), uint16(0), seq, deleted, generation)
}

// insert inserts one row of values into the named columns of the table
// (through a batch: 18.16 takes no INSERT … VALUES with bound arguments).
func insert(t *testing.T, ctx context.Context, ch *testenv.ClickHouseServer, columns string, values ...any) {
	t.Helper()
	b, err := ch.Conn.PrepareBatch(ctx, "INSERT INTO "+ch.Database+"."+Table+" ("+columns+")")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Append(values...); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
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

	la, _, found, err := s.Acquire(ctx, "a")
	if err != nil || found || la.Generation != 1 {
		t.Fatalf("first Acquire = %+v, found %v, %v; want generation 1, nothing found", la, found, err)
	}
	lb, _, _, err := s.Acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)
	saves := []struct {
		lease checkpoint.Lease
		cp    checkpoint.Checkpoint
	}{
		{la, checkpoint.Checkpoint{Pipeline: "a", Position: "tok-1", Events: 10, SavedAt: at, Generation: 1}},
		{lb, checkpoint.Checkpoint{Pipeline: "b", Position: "0/16B3748", Events: 5, SavedAt: at, Generation: 1}},
		{la, checkpoint.Checkpoint{Pipeline: "a", Position: "tok-2", Events: 25, SavedAt: at.Add(1500 * time.Millisecond), Generation: 1}},
		{la, checkpoint.Checkpoint{Pipeline: "a", Position: "tok-3", Events: 40, SavedAt: at.Add(2 * time.Second), Generation: 1}},
	}
	for _, sv := range saves {
		if err := s.Save(ctx, sv.lease, sv.cp); err != nil {
			t.Fatalf("Save(%v): %v", sv.cp, err)
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
		{"a", saves[3].cp, true},
		{"b", saves[1].cp, true},
		{"c", checkpoint.Checkpoint{}, false},
	}
	for _, tt := range tests {
		got, found, err := s2.Load(ctx, tt.pipeline)
		if err != nil || found != tt.wantFound || !got.SavedAt.Equal(tt.want.SavedAt) || got.Position != tt.want.Position ||
			got.Events != tt.want.Events || got.Pipeline != tt.want.Pipeline || got.Generation != tt.want.Generation {
			t.Errorf("Load(%s) = %+v, %v, %v; want %+v, %v", tt.pipeline, got, found, err, tt.want, tt.wantFound)
		}
	}

	if err := s2.Reset(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got, found, err := s.Load(ctx, "a"); err != nil || found || got.Generation != 2 {
		t.Errorf("Load(a) after Reset = %+v, found %v, %v; want none, generation 2", got, found, err)
	}
	if got, found, _ := s.Load(ctx, "b"); !found || got.Position != "0/16B3748" {
		t.Errorf("Load(b) after Reset(a) = %+v, %v; want position 0/16B3748", got, found)
	}
	// A new lease after the reset brings the pipeline back.
	la2, _, found, err := s.Acquire(ctx, "a")
	if err != nil || found || la2.Generation != 3 {
		t.Fatalf("Acquire after Reset = %+v, found %v, %v; want generation 3, nothing found", la2, found, err)
	}
	if err := s.Save(ctx, la2, checkpoint.Checkpoint{Pipeline: "a", Position: "tok-9", Events: 1}); err != nil {
		t.Fatal(err)
	}
	if got, found, err := s2.Load(ctx, "a"); err != nil || !found || got.Position != "tok-9" || got.Generation != 3 {
		t.Errorf("Load(a) after a new save = %+v, %v, %v; want tok-9 in generation 3", got, found, err)
	}
}

// TestStaleRowNeverWins: a stale process's save that lands after a newer
// Acquire (it passed its check just before) loses by construction, before
// and after ClickHouse merges, whatever its counter.
func TestStaleRowNeverWins(t *testing.T) {
	testenv.ForEachClickHouse(t, testStaleRowNeverWins)
}

func testStaleRowNeverWins(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	old, fresh := New(ch.Conn, ch.Database), lazy(t, ch)
	defer fresh.Close()
	l1, _, _, err := old.Acquire(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Save(ctx, l1, checkpoint.Checkpoint{Pipeline: "p", Position: "old-1", Events: 10}); err != nil {
		t.Fatal(err)
	}
	l2, cp, _, err := fresh.Acquire(ctx, "p")
	if err != nil || cp.Position != "old-1" {
		t.Fatalf("second Acquire = %+v, %+v, %v; want old-1 carried forward", l2, cp, err)
	}
	tests := []struct {
		name    string
		counter uint64
	}{
		{"the stale process's next save", 3},
		{"a stale save with the largest counter", counterMask},
	}
	for _, tt := range tests {
		insertRow(t, ctx, ch, "p", "stale", 99, l1.Generation<<counterBits|tt.counter, 0, l1.Generation)
		for _, final := range []bool{false, true} {
			if final {
				if err := ch.Conn.Exec(ctx, "OPTIMIZE TABLE "+ch.Database+"."+Table+" FINAL"); err != nil {
					t.Fatal(err)
				}
			}
			got, found, err := New(ch.Conn, ch.Database).Load(ctx, "p")
			if err != nil || !found || got.Position != "old-1" || got.Generation != l2.Generation {
				t.Errorf("%s (merged %v): Load = %+v, %v, %v; want old-1 of generation %d", tt.name, final, got, found, err, l2.Generation)
			}
			var pos string
			if err := ch.Conn.QueryRow(ctx, "SELECT position FROM "+ch.Database+"."+Table+" FINAL WHERE pipeline = 'p'").Scan(&pos); err != nil || pos != "old-1" {
				t.Errorf("%s (merged %v): FINAL row = %q, %v; want old-1", tt.name, final, pos, err)
			}
		}
	}
	err = old.Save(ctx, l1, checkpoint.Checkpoint{Pipeline: "p", Position: "old-2", Events: 20})
	if !errors.Is(err, checkpoint.ErrFenced) || !fault.IsPermanent(err) ||
		!strings.Contains(err.Error(), `checkpoint of pipeline "p" was reset or taken over by another process (generation 2; this process holds 1)`) {
		t.Errorf("stale Save = %v, want a permanent ErrFenced naming both generations", err)
	}
	if err := fresh.Save(ctx, l2, checkpoint.Checkpoint{Pipeline: "p", Position: "new-1", Events: 11}); err != nil {
		t.Errorf("Save under the newer lease after the stale rows: %v", err)
	}
	if got, _, _ := old.Load(ctx, "p"); got.Position != "new-1" {
		t.Errorf("Load = %+v, want new-1", got)
	}
}

// TestSameGenerationAtTheSameMoment: when another process writes a row of
// the generation an Acquire or Reset just took (both read the same newest
// row), the call fails transiently and its retry takes the next
// generation; a reset's tombstone outranks an Acquire's row of the same
// generation, so the retry carries the reset forward.
func TestSameGenerationAtTheSameMoment(t *testing.T) {
	testenv.ForEachClickHouse(t, testSameGenerationAtTheSameMoment)
}

func testSameGenerationAtTheSameMoment(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	tests := []struct {
		name      string
		reset     bool   // the call is a Reset, else an Acquire
		other     string // what the other process wrote: "acquire" or "reset"
		wantFound bool   // the retried Acquire finds the checkpoint
	}{
		{"two acquires", false, "acquire", true},
		{"an acquire and a reset", false, "reset", false},
		{"a reset and an acquire", true, "acquire", false},
	}
	for i, tt := range tests {
		p := string(rune('a' + i))
		s := New(ch.Conn, ch.Database)
		l, _, _, err := s.Acquire(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ctx, l, checkpoint.Checkpoint{Pipeline: p, Position: "pos", Events: 5}); err != nil {
			t.Fatal(err)
		}
		s.beforeVerify = func(ctx context.Context, gen uint64) {
			if tt.other == "reset" {
				insertRow(t, ctx, ch, p, "", 0, gen<<counterBits|counterReset, 1, gen)
			} else {
				insertRow(t, ctx, ch, p, "pos", 5, gen<<counterBits|counterAcquire, 0, gen)
			}
		}
		if tt.reset {
			err = s.Reset(ctx, p)
		} else {
			_, _, _, err = s.Acquire(ctx, p)
		}
		if err == nil || fault.IsPermanent(err) || !strings.Contains(err.Error(), "at the same moment (generation 2)") {
			t.Errorf("%s: first call = %v, want a transient error about generation 2", tt.name, err)
		}
		s.beforeVerify = nil
		if tt.reset {
			if err := s.Reset(ctx, p); err != nil {
				t.Errorf("%s: the reset run again: %v", tt.name, err)
			}
		}
		lease, cp, found, err := s.Acquire(ctx, p)
		want := uint64(3)
		if tt.reset {
			want = 4
		}
		if err != nil || found != tt.wantFound || lease.Generation != want || (found && cp.Position != "pos") {
			t.Errorf("%s: the retried Acquire = %+v, %+v, found %v, %v; want generation %d, found %v", tt.name, lease, cp, found, err, want, tt.wantFound)
		}
		if err := s.Save(ctx, l, checkpoint.Checkpoint{Pipeline: p, Position: "late", Events: 6}); !errors.Is(err, checkpoint.ErrFenced) {
			t.Errorf("%s: Save under generation 1 = %v, want ErrFenced", tt.name, err)
		}
	}
}

// TestUpgradeFromTableWithoutGenerations: a table of the version before
// generations (its seqs a microsecond clock) is read as it is by Load, gets
// the generation column on Acquire, and every new generation outranks its
// rows, also one an old process writes afterwards with the clock.
func TestUpgradeFromTableWithoutGenerations(t *testing.T) {
	testenv.ForEachClickHouse(t, testUpgradeFromTableWithoutGenerations)
}

func testUpgradeFromTableWithoutGenerations(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	tbl := ch.Database + "." + Table
	oldDDL := "CREATE TABLE " + tbl + ` (pipeline String, position String, events UInt64,
		saved_at DateTime('UTC'), saved_at_ms UInt16, seq UInt64, deleted UInt8)
		ENGINE = ReplacingMergeTree(seq) ORDER BY pipeline`
	if err := ch.Conn.Exec(ctx, oldDDL); err != nil {
		t.Fatal(err)
	}
	oldSeq := uint64(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC).UnixMicro())
	insertOld := func(pos string, events, seq uint64) {
		t.Helper()
		insert(t, ctx, ch, "pipeline, position, events, saved_at, saved_at_ms, seq, deleted",
			"p", pos, events, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), uint16(0), seq, uint8(0))
	}
	insertOld("old-1", 100, oldSeq)

	got, found, err := New(ch.Conn, ch.Database).Load(ctx, "p")
	if err != nil || !found || got.Position != "old-1" || got.Events != 100 || got.Generation != 0 {
		t.Fatalf("Load from the old table = %+v, %v, %v; want old-1, 100 events, generation 0", got, found, err)
	}
	if cols := testenv.DataColumns(t, ch.Conn, ch.Database, Table); strings.Contains(strings.Join(cols, ","), "generation") {
		t.Errorf("Load changed the table: columns %v", cols)
	}

	s := lazy(t, ch)
	defer s.Close()
	lease, cp, found, err := s.Acquire(ctx, "p")
	if err != nil || !found || cp.Position != "old-1" || cp.Events != 100 {
		t.Fatalf("Acquire on the old table = %+v, %+v, %v, %v; want old-1 carried forward", lease, cp, found, err)
	}
	if lease.Generation <= oldSeq>>counterBits {
		t.Errorf("generation %d is not above the old seq's %d", lease.Generation, oldSeq>>counterBits)
	}
	if err := s.Save(ctx, lease, checkpoint.Checkpoint{Pipeline: "p", Position: "new-1", Events: 150}); err != nil {
		t.Fatal(err)
	}
	// An old process, still running, saves with its clock a minute later.
	insertOld("old-2", 160, oldSeq+60e6)
	got, found, err = New(ch.Conn, ch.Database).Load(ctx, "p")
	if err != nil || !found || got.Position != "new-1" || got.Generation != lease.Generation {
		t.Errorf("Load after the upgrade = %+v, %v, %v; want new-1 of generation %d", got, found, err, lease.Generation)
	}
	// A second store upgrading the same table at the same time finds the column there.
	if err := lazy(t, ch).Ensure(ctx); err != nil {
		t.Errorf("Ensure on the upgraded table: %v", err)
	}
}

// TestCorruptRowIsPermanent: a row whose fields are inconsistent stops
// Acquire and Load with a permanent error saying how to repair it; Reset
// replaces it.
func TestCorruptRowIsPermanent(t *testing.T) {
	testenv.ForEachClickHouse(t, testCorruptRowIsPermanent)
}

func testCorruptRowIsPermanent(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	if err := New(ch.Conn, ch.Database).Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		seq        uint64
		deleted    uint8
		generation uint64
		want       string
	}{
		{"deleted neither 0 nor 1", 5<<counterBits | 2, 7, 5, "deleted is 7, not 0 or 1"},
		{"generation against seq", 5<<counterBits | 2, 0, 9, "generation 9 does not match seq 21474836482"},
	}
	for i, tt := range tests {
		p := string(rune('a' + i))
		insertRow(t, ctx, ch, p, "pos", 1, tt.seq, tt.deleted, tt.generation)
		s := New(ch.Conn, ch.Database)
		_, _, loadErr := s.Load(ctx, p)
		_, _, _, acquireErr := s.Acquire(ctx, p)
		for op, err := range map[string]error{"Load": loadErr, "Acquire": acquireErr} {
			if !errors.Is(err, checkpoint.ErrCorrupt) || !fault.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) ||
				!strings.Contains(err.Error(), "repair the row, or run `tributary checkpoint reset --pipeline "+p+"` to start the pipeline over") {
				t.Errorf("%s: %s = %v; want a permanent ErrCorrupt saying %q and how to repair it", tt.name, op, err, tt.want)
			}
		}
		if err := s.Reset(ctx, p); err != nil {
			t.Fatalf("%s: Reset: %v", tt.name, err)
		}
		if lease, _, found, err := s.Acquire(ctx, p); err != nil || found || lease.Generation <= tt.generation {
			t.Errorf("%s: Acquire after Reset = %+v, found %v, %v; want a new generation without a checkpoint", tt.name, lease, found, err)
		}
	}
}

// TestLazyConnection: NewLazy connects on first use, one attempt per call;
// an unreachable server is transient, bad credentials permanent.
func TestLazyConnection(t *testing.T) {
	if _, err := NewLazy(chsink.Config{}); err == nil || !fault.IsPermanent(err) {
		t.Errorf("NewLazy of an invalid configuration = %v, want a permanent error", err)
	}
	cfg := chsink.DefaultConfig()
	cfg.Addr = []string{"127.0.0.1:1"}
	cfg.DialTimeout = 2 * time.Second
	s, err := NewLazy(cfg)
	if err != nil {
		t.Fatalf("NewLazy with an unreachable server = %v, want no connection attempt yet", err)
	}
	ctx := testenv.Context(t, time.Minute)
	for range 2 {
		if _, _, _, err := s.Acquire(ctx, "p"); err == nil || fault.IsPermanent(err) || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("Acquire with an unreachable server = %v, want a transient error naming the address", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close of a store that never connected: %v", err)
	}
	testenv.ForEachClickHouse(t, testLazyConnection)
}

func testLazyConnection(t *testing.T, ch *testenv.ClickHouseServer) {
	if ch.Modern() && ch.FromTestBed() {
		t.Skip("a failed login aborts the test bed's modern server (clickhouse-local)")
	}
	ctx := testenv.Context(t, time.Minute)
	cfg := storeConfig(ch)
	cfg.User, cfg.Password = "tributary", "wrong-password"
	s, err := NewLazy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, _, err := s.Acquire(ctx, "p"); err == nil || !fault.IsPermanent(err) {
		t.Errorf("Acquire with a wrong password = %v, want a permanent error", err)
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
		lease, _, _, err := s.Acquire(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		for j := range 3 {
			pos := string(rune('A'+i)) + string(rune('0'+j))
			if err := s.Save(ctx, lease, checkpoint.Checkpoint{Pipeline: "p", Position: source.Position(pos), Events: uint64(i*3 + j)}); err != nil {
				t.Fatal(err)
			}
			got, found, err := New(ch.Conn, ch.Database).Load(ctx, "p")
			if err != nil || !found || string(got.Position) != pos || !got.SavedAt.Equal(clock) {
				t.Fatalf("after save %s with clock %s: Load = %+v, %v, %v; want position %s saved at the clock", pos, clock, got, found, err, pos)
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
	lease, _, _, err := s.Acquire(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, lease, checkpoint.Checkpoint{Pipeline: "p", Position: "tok-1", Events: 1}); err != nil {
		t.Fatal(err)
	}
	if got, found, err := New(ch.Conn, ch.Database).Load(ctx, "p"); err != nil || !found || got.Position != "tok-1" {
		t.Errorf("Load right after Save = %+v, %v, %v; want tok-1", got, found, err)
	}
	if err := ch.Conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		t.Fatal(err)
	}
	rows, err := ch.Conn.Query(ctx, `SELECT Settings['async_insert'], Settings['wait_for_async_insert'] FROM system.query_log
		WHERE type = 'QueryFinish' AND query_kind = 'Insert' AND user = 'async' AND has(tables, ?)`, ch.Database+"."+Table)
	if err != nil {
		t.Fatalf("the checkpoint INSERTs in the query log: %v", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var async, wait string
		if err := rows.Scan(&async, &wait); err != nil {
			t.Fatal(err)
		}
		n++
		if async != "0" || wait != "1" {
			t.Errorf("a checkpoint INSERT ran with async_insert=%s wait_for_async_insert=%s, want 0 and 1", async, wait)
		}
	}
	if n != 2 { // Acquire's and Save's
		t.Errorf("%d checkpoint INSERTs in the query log, want 2", n)
	}
}

// TestDroppedTable: when the table is dropped under a running pipeline, its
// next save is fenced (its generation is gone), Load finds nothing, and the
// next Acquire creates the table again.
func TestDroppedTable(t *testing.T) {
	testenv.ForEachClickHouse(t, testDroppedTable)
}

func testDroppedTable(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	s := New(ch.Conn, ch.Database)
	lease, _, _, err := s.Acquire(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, lease, checkpoint.Checkpoint{Pipeline: "p", Position: "a", Events: 1}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Conn.Exec(ctx, "DROP TABLE "+ch.Database+"."+Table); err != nil {
		t.Fatal(err)
	}
	err = s.Save(ctx, lease, checkpoint.Checkpoint{Pipeline: "p", Position: "b", Events: 2})
	if !errors.Is(err, checkpoint.ErrFenced) || !strings.Contains(err.Error(), `checkpoint of pipeline "p" was removed`) {
		t.Errorf("Save after the table was dropped = %v, want ErrFenced saying the checkpoint was removed", err)
	}
	if _, found, err := s.Load(ctx, "p"); err != nil || found {
		t.Errorf("Load after the table was dropped = found %v, %v; want none", found, err)
	}
	if l, _, found, err := s.Acquire(ctx, "p"); err != nil || found || l.Generation != 1 {
		t.Errorf("Acquire after the table was dropped = %+v, found %v, %v; want generation 1 in a new table", l, found, err)
	}
}

// TestClusterCheckpointOnEveryNode: on a cluster the checkpoint table is
// created ON CLUSTER as one replicated table across every node, whatever
// its shard, so a checkpoint saved through one node is read on each of the
// others (here the two shards of tributary_2x1, which share no data table).
func TestClusterCheckpointOnEveryNode(t *testing.T) {
	c := testenv.Cluster(t, "tributary_2x1")
	ctx := testenv.Context(t, 3*time.Minute)
	cfg := chsink.DefaultConfig()
	cfg.Addr = []string{c.Nodes[0].Addr}
	cfg.Database = c.Database
	cfg.Cluster = c.Name
	s, err := NewLazy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lease, _, _, err := s.Acquire(ctx, "p")
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	at := time.Date(2026, 12, 2, 12, 0, 0, 250e6, time.UTC)
	cp := checkpoint.Checkpoint{Pipeline: "p", Position: "tok-9", Events: 99, SavedAt: at, Generation: lease.Generation}
	if err := s.Save(ctx, lease, cp); err != nil {
		t.Fatalf("Save: %v", err)
	}
	for i := range c.Nodes {
		conn := c.Open(t, i)
		var engine string
		if err := conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", c.Database, Table).Scan(&engine); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if engine != "ReplicatedReplacingMergeTree" {
			t.Errorf("node %d: checkpoint table engine %s", i, engine)
		}
		c.SyncReplicas(t, conn)
		got, found, err := New(conn, c.Database).WithCluster(cfg.ClusterSpec()).Load(ctx, "p")
		if err != nil || !found || got.Position != "tok-9" || got.Events != 99 || !got.SavedAt.Equal(at) {
			t.Errorf("node %d: Load = %+v, found %v, %v; want the saved checkpoint", i, got, found, err)
		}
	}
}

// TestClusterReplicaThatLags: a replica that has not fetched the newest
// generation yet (its fetches stopped, as while it is down or catching up
// after an outage) neither fences the process that holds that generation
// nor lets a stale one through. A save through it waits for it to catch up
// and, while it cannot, fails transiently; once it fetches again the save
// goes through, and the older generation's process is still fenced.
func TestClusterReplicaThatLags(t *testing.T) {
	c := testenv.Cluster(t, "tributary_1x2")
	ctx := testenv.Context(t, 3*time.Minute)
	cfg := chsink.DefaultConfig()
	cfg.Database = c.Database
	cfg.Cluster = c.Name
	spec := cfg.ClusterSpec()
	a, b := c.Open(t, 0), c.Open(t, 1)
	onA := New(a, c.Database).WithCluster(spec)
	onA.syncWait = 2 * time.Second
	onB := New(b, c.Database).WithCluster(spec)

	first, _, _, err := onA.Acquire(ctx, "p")
	if err != nil {
		t.Fatalf("Acquire through replica a: %v", err)
	}
	if err := onA.Save(ctx, first, checkpoint.Checkpoint{Pipeline: "p", Position: "tok-10", Events: 10}); err != nil {
		t.Fatalf("Save through replica a: %v", err)
	}
	stop := "SYSTEM STOP FETCHES " + c.Database + "." + Table
	if err := a.Exec(ctx, stop); err != nil {
		t.Fatalf("%s: %v", stop, err)
	}
	started := false
	start := func() {
		if !started {
			started = true
			if err := a.Exec(context.Background(), "SYSTEM START FETCHES "+c.Database+"."+Table); err != nil {
				t.Errorf("SYSTEM START FETCHES: %v", err)
			}
		}
	}
	t.Cleanup(start)

	// A second process takes the next generation through replica b, which
	// has the first one's rows (Acquire brings its replica up to date).
	second, cp, found, err := onB.Acquire(ctx, "p")
	if err != nil || !found || cp.Events != 10 || second.Generation <= first.Generation {
		t.Fatalf("Acquire through replica b = %+v, %+v, found %v, %v; want a generation above %d carrying 10 events", second, cp, found, err, first.Generation)
	}
	if err := onB.Save(ctx, second, checkpoint.Checkpoint{Pipeline: "p", Position: "tok-20", Events: 20}); err != nil {
		t.Fatalf("Save through replica b: %v", err)
	}

	// Through replica a, which lacks the second generation: not fenced,
	// a transient error that says why.
	err = onA.Save(ctx, second, checkpoint.Checkpoint{Pipeline: "p", Position: "tok-30", Events: 30})
	var fenced *checkpoint.FencedError
	switch {
	case err == nil:
		t.Fatal("Save through a replica that lacks the lease's generation succeeded without it catching up")
	case errors.As(err, &fenced) || fault.IsPermanent(err):
		t.Fatalf("Save through a replica that lags: %v; want a transient error, not a fence", err)
	case !strings.Contains(err.Error(), "lacks generation"):
		t.Errorf("Save through a replica that lags: %v; want it to say the replica lacks the generation", err)
	}
	t.Logf("while replica a cannot fetch: %v", err)

	start()
	onA.syncWait = 0
	t0 := time.Now()
	if err := onA.Save(ctx, second, checkpoint.Checkpoint{Pipeline: "p", Position: "tok-30", Events: 30}); err != nil {
		t.Fatalf("Save through replica a once it fetches again: %v", err)
	}
	t.Logf("took %s", time.Since(t0))
	if err := onA.Save(ctx, first, checkpoint.Checkpoint{Pipeline: "p", Position: "tok-99", Events: 99}); !errors.As(err, &fenced) {
		t.Errorf("Save of the older generation through replica a = %v; want it fenced", err)
	}
	got, found, err := onA.Load(ctx, "p")
	if err != nil || !found || got.Position != "tok-30" || got.Events != 30 {
		t.Errorf("Load through replica a = %+v, found %v, %v; want tok-30 at 30 events", got, found, err)
	}
}
