package clickhouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
)

// testConfig returns the sink's configuration for ch's server and database,
// with the leg's session settings.
func testConfig(ch *testenv.ClickHouseServer) Config {
	cfg := DefaultConfig()
	cfg.Addr = []string{ch.Addr}
	cfg.Database = ch.Database
	cfg.Settings = ch.Settings
	return cfg
}

// wantDialect is the dialect the sink must choose on ch's server.
func wantDialect(ch *testenv.ClickHouseServer) Dialect {
	if ch.Modern() {
		return Modern
	}
	return Legacy
}

// newTestSink returns a sink on ch's server writing to ch's database.
func newTestSink(t testing.TB, ch *testenv.ClickHouseServer, edit func(c *Config)) *Sink {
	t.Helper()
	cfg := testConfig(ch)
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(testenv.Context(t, 30*time.Second), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rowsOf(n int, base time.Time) *mapping.Rows {
	r := mapping.NewRows()
	for i := range n {
		appendRow(r, testSchema().Tables[0], testRow(i, base.Add(time.Duration(i)*time.Millisecond*1001)))
	}
	return r
}

func TestEnsureAndWriteRoundTrip(t *testing.T) {
	testenv.ForEachClickHouse(t, testEnsureAndWriteRoundTrip)
}

func testEnsureAndWriteRoundTrip(t *testing.T, ch *testenv.ClickHouseServer) {
	var inserts atomic.Int64
	s := newTestSink(t, ch, func(c *Config) {
		c.BatchRows = 4
		c.OnInsert = func(string, int, time.Duration) { inserts.Add(1) }
	})
	ctx := testenv.Context(t, time.Minute)
	if got, want := s.Dialect(), wantDialect(ch); got != want {
		t.Fatalf("Dialect() on %s = %s, want %s", s.ServerVersion(), got, want)
	}
	schema := testSchema()
	for range 2 { // Ensure is idempotent
		if err := s.Ensure(ctx, schema); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}
	// Without merges the replay's rows stay visible beside the first ones
	// until FINAL collapses them (a background merge could collapse them
	// before the count below, which made this test flaky).
	if err := ch.Conn.Exec(ctx, "SYSTEM STOP MERGES things"); err != nil {
		t.Fatalf("stop merges: %v", err)
	}
	base := time.Date(2026, 5, 6, 7, 8, 9, 123e6, time.UTC)
	const n = 10
	if err := s.Write(ctx, rowsOf(n, base)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := s.Write(ctx, rowsOf(n, base)); err != nil { // a replay
		t.Fatalf("Write again: %v", err)
	}
	st := s.Stats()
	if got, want := st.Inserts, uint64(6); got != want { // 10 rows in chunks of 4, twice
		t.Errorf("Stats().Inserts = %d, want %d", got, want)
	}
	if got, want := inserts.Load(), int64(6); got != want {
		t.Errorf("OnInsert calls = %d, want %d", got, want)
	}
	if got, want := st.Rows, uint64(2*n); got != want {
		t.Errorf("Stats().Rows = %d, want %d", got, want)
	}
	var all, final uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM things").Scan(&all); err != nil {
		t.Fatal(err)
	}
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM things FINAL").Scan(&final); err != nil {
		t.Fatal(err)
	}
	if all != 2*n || final != n {
		t.Errorf("count() = %d, FINAL count() = %d; want %d and %d", all, final, 2*n, n)
	}
	var viewCount uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM things_latest").Scan(&viewCount); err != nil {
		t.Fatalf("query the view: %v", err)
	}
	if viewCount != n {
		t.Errorf("view count = %d, want %d", viewCount, n)
	}

	// Read every row back and compare it with what was written, rebuilding
	// the millisecond times from the legacy pairs (modern times carry them).
	q := `SELECT id, kind, ts, ts_ms, n32, flag, tags, statuses, note, ended, ended_ms, version FROM things FINAL ORDER BY id`
	if s.Dialect() == Modern {
		q = `SELECT id, kind, ts, toUInt16(0), n32, flag, tags, statuses, note, ended, toUInt16(0), version FROM things FINAL ORDER BY id`
		var types string
		if err := ch.Conn.QueryRow(ctx, "SELECT arrayStringConcat(groupArray(type), ';') FROM (SELECT type FROM system.columns WHERE database = ? AND table = 'things' AND name IN ('kind', 'ts', 'ended') ORDER BY name)", ch.Database).Scan(&types); err != nil {
			t.Fatal(err)
		}
		if want := "Nullable(DateTime64(3, 'UTC'));LowCardinality(String);DateTime64(3, 'UTC')"; types != want {
			t.Errorf("modern column types of ended, kind, ts = %s, want %s", types, want)
		}
	}
	rows, err := ch.Conn.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for rows.Next() {
		var (
			id, kind       string
			ts             time.Time
			tsMs, endedMs  uint16
			n32            uint32
			flag           uint8
			tags, statuses []string
			note           *string
			ended          *time.Time
			version        uint64
		)
		if err := rows.Scan(&id, &kind, &ts, &tsMs, &n32, &flag, &tags, &statuses, &note, &ended, &endedMs, &version); err != nil {
			t.Fatal(err)
		}
		want := testRow(i, base.Add(time.Duration(i)*time.Millisecond*1001))
		gotTS := ts.Add(time.Duration(tsMs) * time.Millisecond).UTC()
		var gotEnded any = (*time.Time)(nil)
		if ended != nil {
			e := ended.Add(time.Duration(endedMs) * time.Millisecond).UTC()
			gotEnded = fmt.Sprint(e)
		} else if endedMs != 0 {
			t.Errorf("row %d: ended is NULL but ended_ms = %d", i, endedMs)
		}
		wantEnded := any((*time.Time)(nil))
		if e := want[8].(*time.Time); e != nil {
			wantEnded = fmt.Sprint(*e)
		}
		got := []any{id, kind, gotTS.String(), n32, flag == 1, strings.Join(tags, ","), strings.Join(statuses, ","), fmt.Sprint(deref(note)), gotEnded, version}
		wantRow := []any{want[0], want[1], want[2].(time.Time).String(), want[3], want[4], strings.Join(want[5].([]string), ","),
			strings.Join(want[6].([]string), ","), fmt.Sprint(deref(want[7].(*string))), wantEnded, want[9]}
		if fmt.Sprint(got) != fmt.Sprint(wantRow) {
			t.Errorf("row %d:\n got %v\nwant %v", i, got, wantRow)
		}
		i++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Errorf("read %d rows back, want %d", i, n)
	}
}

// isPermanent is what pipeline.IsPermanent checks.
func isPermanent(err error) bool {
	var pe interface{ Permanent() bool }
	return errors.As(err, &pe) && pe.Permanent()
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func TestEnsureRefusesTypeMismatch(t *testing.T) {
	testenv.ForEachClickHouse(t, testEnsureRefusesTypeMismatch)
}

func testEnsureRefusesTypeMismatch(t *testing.T, ch *testenv.ClickHouseServer) {
	s := newTestSink(t, ch, nil)
	ctx := testenv.Context(t, time.Minute)
	ddl := `CREATE TABLE things (id String, kind String, ts DateTime('UTC'), ts_ms UInt16, n32 UInt64,
		flag UInt8, tags Array(String), statuses Array(String), note Nullable(String), ended Nullable(DateTime('UTC')),
		ended_ms UInt16, version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY id`
	if s.Dialect() == Modern {
		ddl = `CREATE TABLE things (id String, kind LowCardinality(String), ts DateTime64(3, 'UTC'), n32 UInt64,
		flag UInt8, tags Array(String), statuses Array(LowCardinality(String)), note Nullable(String),
		ended Nullable(DateTime64(3, 'UTC')), version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY id`
	}
	err := ch.Conn.Exec(ctx, ddl)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Ensure(ctx, testSchema())
	if err == nil {
		t.Fatal("Ensure accepted column n32 of type UInt64, want a refusal")
	}
	if !isPermanent(err) {
		t.Errorf("a type mismatch is not marked permanent: %v", err)
	}
	for _, want := range []string{"things", "n32", "UInt64", "UInt32"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Ensure error %q does not mention %q", err, want)
		}
	}
}

func TestEnsureAddsMissingColumns(t *testing.T) {
	testenv.ForEachClickHouse(t, testEnsureAddsMissingColumns)
}

func testEnsureAddsMissingColumns(t *testing.T, ch *testenv.ClickHouseServer) {
	s := newTestSink(t, ch, nil)
	ctx := testenv.Context(t, time.Minute)
	// An older version of the table: no `ended` (and so, in legacy, no
	// ended_ms) and no `note`.
	ddl := `CREATE TABLE things (id String, kind String, ts DateTime('UTC'), ts_ms UInt16, n32 UInt32,
		flag UInt8, tags Array(String), statuses Array(String), version UInt64)
		ENGINE = ReplacingMergeTree(version) ORDER BY (kind, ts, ts_ms, id)`
	want := "ended Nullable(DateTime('UTC')); ended_ms UInt16; note Nullable(String)"
	if s.Dialect() == Modern {
		ddl = `CREATE TABLE things (id String, kind LowCardinality(String), ts DateTime64(3, 'UTC'), n32 UInt32,
		flag UInt8, tags Array(String), statuses Array(LowCardinality(String)), version UInt64)
		ENGINE = ReplacingMergeTree(version) ORDER BY (kind, ts, id)`
		want = "ended Nullable(DateTime64(3, 'UTC')); note Nullable(String)"
	}
	if err := ch.Conn.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(ctx, testSchema()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	var got []string
	rows, err := ch.Conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = 'things' AND name IN ('note', 'ended', 'ended_ms') ORDER BY name", ch.Database)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		got = append(got, name+" "+typ)
	}
	rows.Close()
	if strings.Join(got, "; ") != want {
		t.Errorf("added columns = %q, want %q", strings.Join(got, "; "), want)
	}
	if err := s.Write(ctx, rowsOf(3, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))); err != nil {
		t.Errorf("Write after the upgrade: %v", err)
	}
}

func TestEnsureWithoutCreateSchema(t *testing.T) {
	testenv.ForEachClickHouse(t, testEnsureWithoutCreateSchema)
}

func testEnsureWithoutCreateSchema(t *testing.T, ch *testenv.ClickHouseServer) {
	s := newTestSink(t, ch, func(c *Config) { c.CreateSchema = false })
	ctx := testenv.Context(t, time.Minute)
	err := s.Ensure(ctx, testSchema())
	if err == nil || !strings.Contains(err.Error(), "things does not exist") || !strings.Contains(err.Error(), "create-schema=false") {
		t.Errorf("Ensure on a missing table with CreateSchema=false = %v, want a clear error", err)
	}
	// Once the schema is prepared (here by the statements RenderDDL gives),
	// the same sink accepts it and writes.
	for _, stmt := range RenderDDL(testSchema(), ch.Database, s.Dialect()) {
		if err := ch.Conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("prepare the schema: %v", err)
		}
	}
	if err := s.Ensure(ctx, testSchema()); err != nil {
		t.Fatalf("Ensure on a prepared schema with CreateSchema=false: %v", err)
	}
	if err := s.Write(ctx, rowsOf(3, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))); err != nil {
		t.Errorf("Write: %v", err)
	}

	cfg := s.cfg
	cfg.Database = testenv.Name("missing_")
	other, err := New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = other.Ensure(ctx, testSchema())
	if err == nil || !strings.Contains(err.Error(), "database "+cfg.Database+" does not exist") {
		t.Errorf("Ensure on a missing database with CreateSchema=false = %v, want a clear error", err)
	}
}

func TestWritePermanentErrorsReturnAtOnce(t *testing.T) {
	testenv.ForEachClickHouse(t, testWritePermanentErrorsReturnAtOnce)
}

func testWritePermanentErrorsReturnAtOnce(t *testing.T, ch *testenv.ClickHouseServer) {
	s := newTestSink(t, ch, nil)
	ctx := testenv.Context(t, time.Minute)
	if err := s.Ensure(ctx, testSchema()); err != nil {
		t.Fatal(err)
	}
	r := rowsOf(1, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	appendRow(r, mapping.Table{Name: "zzz_unknown_table", Columns: []mapping.Column{{Name: "x", Type: mapping.String}}}, []any{"x"})
	if err := s.Write(ctx, r); err == nil || !strings.Contains(err.Error(), "not part of the ensured schema") || !isPermanent(err) {
		t.Errorf("Write to an unknown table = %v, want a permanent error", err)
	}
	var landed uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM things").Scan(&landed); err != nil {
		t.Fatal(err)
	}
	if landed != 0 {
		t.Errorf("a Write refused for an unknown table still wrote %d rows of a known one", landed)
	}
	if err := ch.Conn.Exec(ctx, "ALTER TABLE things DROP COLUMN note"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := s.Write(ctx, rowsOf(2, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	if err == nil || !strings.Contains(err.Error(), "note") || !isPermanent(err) {
		t.Errorf("Write with a dropped column = %v (permanent: %v), want a permanent error naming the column", err, isPermanent(err))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a permanent error took %s to return", took)
	}
	if got := s.Stats().Failures; got != 2 {
		t.Errorf("Stats().Failures = %d, want 2", got)
	}
}

// flakyProxy forwards loopback TCP connections to the real server; while it is
// broken it closes every connection, open or new; while it is frozen it
// stops passing bytes (a server that stopped answering).
type flakyProxy struct {
	ln     net.Listener
	target string
	broken atomic.Bool
	frozen atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func newFlakyProxy(t *testing.T, target string) *flakyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *flakyProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.broken.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go func() { p.copy(up, c); up.Close(); c.Close() }()
		go func() { p.copy(c, up); up.Close(); c.Close() }()
	}
}

// copy passes bytes from src to dst, holding them while the proxy is frozen.
func (p *flakyProxy) copy(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		for p.frozen.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every open connection.
func (p *flakyProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// TestWriteFailsOnceAndTransiently: through a path that is cut, Write makes
// one attempt and returns an error that is neither permanent nor poison (the
// pipeline retries it); once the path heals, the same rows land.
func TestWriteFailsOnceAndTransiently(t *testing.T) {
	testenv.ForEachClickHouse(t, testWriteFailsOnceAndTransiently)
}

func testWriteFailsOnceAndTransiently(t *testing.T, ch *testenv.ClickHouseServer) {
	proxy := newFlakyProxy(t, ch.Addr)
	cfg := testConfig(ch)
	cfg.Addr = []string{proxy.ln.Addr().String()}
	cfg.DialTimeout = 2 * time.Second
	ctx := testenv.Context(t, time.Minute)
	s, err := New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ensure(ctx, testSchema()); err != nil {
		t.Fatal(err)
	}
	const n = 50
	rows := rowsOf(n, time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC))
	proxy.broken.Store(true)
	proxy.cut()
	start := time.Now()
	err = s.Write(ctx, rows)
	if err == nil || isPermanent(err) || fault.IsPoison(err) {
		t.Fatalf("Write through a cut path = %v (permanent %v, poison %v), want a transient error", err, isPermanent(err), fault.IsPoison(err))
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("one attempt took %s", took)
	}
	if got := s.Stats().Failures; got != 1 {
		t.Errorf("Stats().Failures = %d, want 1", got)
	}
	proxy.broken.Store(false)
	// The pool may still hold a cut connection: the pipeline would retry.
	for attempt := 0; ; attempt++ {
		if err = s.Write(ctx, rows); err == nil || attempt >= 5 {
			break
		}
	}
	if err != nil {
		t.Fatalf("Write once the path healed: %v", err)
	}
	var final uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM things FINAL").Scan(&final); err != nil {
		t.Fatal(err)
	}
	if final != n {
		t.Errorf("FINAL count() = %d, want %d", final, n)
	}
}

// TestOutOfRangeTimeIsPoison: a time the server's column cannot hold refuses
// the rows (poison: the pipeline isolates the event), naming the column and
// the row, and writes nothing of the chunk.
func TestOutOfRangeTimeIsPoison(t *testing.T) {
	testenv.ForEachClickHouse(t, testOutOfRangeTimeIsPoison)
}

func testOutOfRangeTimeIsPoison(t *testing.T, ch *testenv.ClickHouseServer) {
	s := newTestSink(t, ch, nil)
	ctx := testenv.Context(t, time.Minute)
	if err := s.Ensure(ctx, testSchema()); err != nil {
		t.Fatal(err)
	}
	bad := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) // beyond legacy DateTime
	if s.Dialect() == Modern {
		bad = time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC) // beyond DateTime64
	}
	r := mapping.NewRows()
	appendRow(r, testSchema().Tables[0], testRow(0, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	appendRow(r, testSchema().Tables[0], testRow(1, bad))
	err := s.Write(ctx, r)
	if !fault.IsPoison(err) || isPermanent(err) || !strings.Contains(err.Error(), "column ts") || !strings.Contains(err.Error(), "row 1") {
		t.Fatalf("Write of a time in %d = %v (poison %v), want a poison error naming column ts and row 1", bad.Year(), err, fault.IsPoison(err))
	}
	var n uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM things").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rows stored from a refused chunk", n)
	}
}

func TestWriteHonoursCancellation(t *testing.T) {
	testenv.ForEachClickHouse(t, testWriteHonoursCancellation)
}

func testWriteHonoursCancellation(t *testing.T, ch *testenv.ClickHouseServer) {
	proxy := newFlakyProxy(t, ch.Addr)
	cfg := testConfig(ch)
	cfg.Addr = []string{proxy.ln.Addr().String()}
	s, err := New(testenv.Context(t, time.Minute), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ensure(testenv.Context(t, time.Minute), testSchema()); err != nil {
		t.Fatal(err)
	}
	proxy.frozen.Store(true) // ClickHouse stops answering
	defer proxy.frozen.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Write(ctx, rowsOf(1, time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)))
	if err == nil {
		t.Fatal("Write to a frozen server within a 500ms context succeeded")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Write returned %s after its context ended, want promptly", took)
	}
}

// TestAuthentication logs in as the test bed's password-protected user
// "tributary", with the password from a file, and checks that a wrong
// password fails at once without the password in the error.
func TestAuthentication(t *testing.T) {
	testenv.ForEachClickHouse(t, testAuthentication)
}

func testAuthentication(t *testing.T, ch *testenv.ClickHouseServer) {
	if !ch.FromTestBed() {
		t.Skip("needs the test bed's user tributary")
	}
	ctx := testenv.Context(t, time.Minute)
	dir := t.TempDir()
	tests := []struct {
		name     string
		password string
		wantErr  bool
	}{
		{"right password", "tributary-secret", false},
		{"wrong password", "not-the-secret-xyz", true},
	}
	for _, tt := range tests {
		if tt.wantErr && ch.Modern() && ch.FromTestBed() {
			// The test bed's modern server is clickhouse-local from libchdb
			// 26.7, which aborts the whole process when a native-protocol
			// login fails (an uncaught AUTHENTICATION_FAILED in its TCP
			// handler; seen in its error log). A real server answers the
			// error; the legacy leg checks how tributary takes it.
			t.Logf("%s: not tried on the test bed's clickhouse-local (a failed login aborts it)", tt.name)
			continue
		}
		pw := filepath.Join(dir, tt.name)
		if err := os.WriteFile(pw, []byte(tt.password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(ch)
		cfg.User = "tributary"
		cfg.PasswordFile = pw
		var logs bytes.Buffer
		s, err := New(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
		if tt.wantErr {
			if err == nil {
				s.Close()
				t.Errorf("%s: New succeeded, want an authentication error", tt.name)
				continue
			}
			if strings.Contains(err.Error(), tt.password) {
				t.Errorf("%s: the error reveals the password: %v", tt.name, err)
			}
			if !isPermanent(err) {
				t.Errorf("%s: authentication failure classified transient or not marked permanent: %v", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: New: %v", tt.name, err)
			continue
		}
		if err := s.Ensure(ctx, testSchema()); err != nil {
			t.Errorf("%s: Ensure as user tributary: %v", tt.name, err)
		}
		s.Close()
		if strings.Contains(logs.String(), tt.password) || !strings.Contains(logs.String(), "connected to ClickHouse") {
			t.Errorf("%s: logs %q reveal the password or lack the connection line", tt.name, logs.String())
		}
	}
}

func TestUnreachableServerIsNotPermanent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Addr = []string{"127.0.0.1:1"}
	cfg.DialTimeout = 2 * time.Second
	_, err := New(testenv.Context(t, 30*time.Second), cfg, nil)
	if err == nil || isPermanent(err) {
		t.Errorf("New on a closed port = %v (permanent: %v), want an error worth retrying", err, isPermanent(err))
	}
	cfg.Database = "bad-name"
	if _, err := New(testenv.Context(t, 30*time.Second), cfg, nil); err == nil || !isPermanent(err) {
		t.Errorf("New with an invalid configuration = %v, want a permanent error", err)
	}
}

// TestConcurrentWrites: the pipeline writes several batches at once; every
// row of every concurrent Write lands, and the counters add up.
func TestConcurrentWrites(t *testing.T) {
	testenv.ForEachClickHouse(t, testConcurrentWrites)
}

func testConcurrentWrites(t *testing.T, ch *testenv.ClickHouseServer) {
	s := newTestSink(t, ch, func(c *Config) { c.BatchRows = 50 })
	ctx := testenv.Context(t, time.Minute)
	if err := s.Ensure(ctx, testSchema()); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 4, 300
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			r := mapping.NewRows()
			for i := range perWriter {
				n := w*perWriter + i
				appendRow(r, testSchema().Tables[0], testRow(n, base.Add(time.Duration(n)*time.Second)))
			}
			errs <- s.Write(ctx, r)
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Write: %v", err)
		}
	}
	var n uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT uniqExact(id) FROM things FINAL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if got, want := n, uint64(writers*perWriter); got != want {
		t.Errorf("distinct rows = %d, want %d", got, want)
	}
	if got, want := s.Stats().Rows, uint64(writers*perWriter); got != want {
		t.Errorf("Stats().Rows = %d, want %d", got, want)
	}
}

// TestInsertsAreSynchronous: a server profile with async_insert=1 and
// wait_for_async_insert=0 (the test bed's user "async", whose buffers flush
// after 10 s) would acknowledge an INSERT before its rows are stored. The
// sink's INSERTs pin both settings, so when Write returns the rows are there
// and a checkpoint saved after it tells the truth. The server's query log
// shows the settings each INSERT ran with: the profile's for a plain INSERT,
// the pinned ones for the sink's. Where the server has an asynchronous insert
// queue, the plain INSERT's rows are also seen missing at first; the test
// bed's clickhouse-local has none and stores every INSERT at once.
func TestInsertsAreSynchronous(t *testing.T) {
	testenv.ForEachClickHouse(t, testInsertsAreSynchronous)
}

func testInsertsAreSynchronous(t *testing.T, ch *testenv.ClickHouseServer) {
	if !ch.Modern() || !ch.FromTestBed() {
		t.Skip("needs the test bed's modern server and its user async (18.16 has no asynchronous inserts)")
	}
	ctx := testenv.Context(t, time.Minute)
	s := newTestSink(t, ch, func(c *Config) { c.User = "async" })
	if err := s.Ensure(ctx, testSchema()); err != nil {
		t.Fatal(err)
	}
	count := func() uint64 {
		var n uint64
		if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM things").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The control: the same user's plain INSERT, without the pinned settings.
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+ch.Database+".things (id, kind, ts, n32, flag, tags, statuses, note, ended, version)")
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.Append("control", "k", time.Now(), uint32(1), uint8(0), []string{}, []string{}, nil, nil, uint64(1)); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	control := count()
	t.Logf("the profile's plain INSERT: %d rows stored when it returned", control)
	const n = 100
	if err := s.Write(ctx, rowsOf(n, time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))); err != nil {
		t.Fatal(err)
	}
	if got := count(); got < n+control {
		t.Errorf("right after Write: %d rows stored, want the %d written (the INSERT was acknowledged before it was stored)", got, n+control)
	}
	if err := ch.Conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		t.Fatal(err)
	}
	rows, err := ch.Conn.Query(ctx, `SELECT user, Settings['async_insert'], Settings['wait_for_async_insert'], countIf(query LIKE '%(id, kind, ts, n32, flag, tags, statuses, note, ended, version)%')
		FROM system.query_log WHERE type = 'QueryFinish' AND query_kind = 'Insert' AND has(databases, ?)
		GROUP BY 1, 2, 3 ORDER BY 2, 3`, ch.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var user, async, wait string
		var inserts uint64
		if err := rows.Scan(&user, &async, &wait, &inserts); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("user=%s async_insert=%s wait_for_async_insert=%s: %d", user, async, wait, inserts))
	}
	// The sink's one INSERT ran with the pinned settings; the control with the profile's.
	want := []string{"user=async async_insert=0 wait_for_async_insert=1: 1", "user=async async_insert=1 wait_for_async_insert=0: 1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("INSERTs in the query log:\n got %q\nwant %q", got, want)
	}
}
