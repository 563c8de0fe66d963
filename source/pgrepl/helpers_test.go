package pgrepl

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// createTableSQL is the emulator's table.
const createTableSQL = `CREATE TABLE IF NOT EXISTS %s (
  locator text PRIMARY KEY, request_id text NOT NULL DEFAULT '', user_locator text NOT NULL DEFAULT '',
  username text NOT NULL DEFAULT '', transaction_id text NOT NULL DEFAULT '', tenant text NOT NULL,
  flavor text NOT NULL, type text NOT NULL, occurred_at timestamptz NOT NULL,
  data json NOT NULL)`

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PGREPL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// fixture is a test database with the events table and a config for it.
type fixture struct {
	pg  *testenv.PostgresServer
	cfg Config
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	pg := testenv.Postgres(t)
	ctx := testenv.Context(t, 30*time.Second)
	if _, err := pg.Conn.Exec(ctx, fmt.Sprintf(createTableSQL, "socotra_events")); err != nil {
		t.Fatalf("create table: %v", err)
	}
	cfg := DefaultConfig()
	cfg.DSN = pg.DSN
	cfg.Publication = testenv.Name("pub_")
	cfg.Slot = testenv.Name("slot_")
	cfg.StatusInterval = 200 * time.Millisecond
	cfg.LagInterval = 200 * time.Millisecond
	return &fixture{pg: pg, cfg: cfg}
}

// open creates and opens a source at from; it is closed at the test's end.
func (f *fixture) open(t testing.TB, cfg Config, from source.Position) *Source {
	t.Helper()
	src, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := testenv.Context(t, 30*time.Second)
	if err := src.Open(ctx, from); err != nil {
		t.Fatalf("Open(%q): %v", from, err)
	}
	t.Cleanup(func() { _ = src.Close(context.Background()) })
	return src
}

// insertSQL inserts the events first..last (inclusive) in one statement.
func insertSQL(table string, first, last int) string {
	return fmt.Sprintf(`INSERT INTO %s (locator, request_id, tenant, flavor, type, occurred_at, data)
		SELECT 'ev-' || lpad(i::text, 9, '0'), 'req-' || i, 'tenant-' || (i %% 3), 'suite', 'policy.issue',
		       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 millisecond',
		       ('{"i": ' || i || ', "policyLocator": "P' || i || '"}')::json
		FROM generate_series(%d, %d) AS i`, table, first, last)
}

func exec(t testing.TB, conn *pgx.Conn, q string, args ...any) {
	t.Helper()
	ctx := testenv.Context(t, 5*time.Minute)
	if _, err := conn.Exec(ctx, q, args...); err != nil {
		t.Fatalf("%.80s: %v", q, err)
	}
}

// collected is what a test read from a source.
type collected struct {
	count     map[string]int // per locator
	events    map[string]source.Event
	last      source.Position
	batches   int
	transient int // transient Read errors retried
}

// read calls Read like the pipeline does: a transient error is retried
// after a pause (the next Read reconnects), a permanent one returned.
func read(ctx context.Context, t testing.TB, src *Source, max int, c *collected) (source.Batch, error) {
	t.Helper()
	for {
		b, err := src.Read(ctx, max)
		if err == nil || fault.IsPermanent(err) || ctx.Err() != nil {
			return b, err
		}
		if c != nil {
			c.transient++
		}
		t.Logf("Read: transient error, retrying: %v", err)
		select {
		case <-ctx.Done():
			return b, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readUntil reads until done says so or the timeout passes.
func readUntil(t testing.TB, src *Source, max int, timeout time.Duration, c *collected, done func(*collected) bool) {
	t.Helper()
	if c.count == nil {
		c.count, c.events = map[string]int{}, map[string]source.Event{}
	}
	deadline := time.Now().Add(timeout)
	for !done(c) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s with %d distinct events, position %s", timeout, len(c.count), c.last)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Until(deadline))
		b, err := read(ctx, t, src, max, c)
		cancel()
		if err != nil {
			t.Fatalf("Read after %d events: %v", len(c.count), err)
		}
		if len(b.Events) > max {
			t.Fatalf("Read(%d) returned %d events", max, len(b.Events))
		}
		c.batches++
		for _, ev := range b.Events {
			c.count[ev.Locator]++
			c.events[ev.Locator] = ev
		}
		if b.Position == "" {
			t.Fatalf("batch without position")
		}
		c.last = b.Position
	}
}

func hasN(n int) func(*collected) bool { return func(c *collected) bool { return len(c.count) >= n } }

// wantExactly fails unless c holds ev-first..ev-last, each exactly once.
func wantExactly(t testing.TB, c *collected, first, last int) {
	t.Helper()
	if got, want := len(c.count), last-first+1; got != want {
		t.Errorf("distinct events: got %d, want %d", got, want)
	}
	bad := 0
	for i := first; i <= last; i++ {
		loc := fmt.Sprintf("ev-%09d", i)
		if n := c.count[loc]; n != 1 && bad < 10 {
			bad++
			t.Errorf("event %s delivered %d times, want 1", loc, n)
		}
	}
}

// slotConfirmed reads the slot's confirmed_flush_lsn.
func slotConfirmed(t testing.TB, conn *pgx.Conn, slot string) pglogrepl.LSN {
	t.Helper()
	var s string
	ctx := testenv.Context(t, 10*time.Second)
	if err := conn.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&s); err != nil {
		t.Fatalf("read confirmed_flush_lsn of %s: %v", slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func lsnOf(t testing.TB, p source.Position) pglogrepl.LSN {
	t.Helper()
	pos, err := parsePosition(p)
	if err != nil {
		t.Fatal(err)
	}
	return pos.lsn
}

func filepathGlob(dir string) ([]string, error) { return filepath.Glob(filepath.Join(dir, "*")) }

func testPosition(s string) source.Position { return source.Position(s) }
