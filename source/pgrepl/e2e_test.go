package pgrepl

// End-to-end proofs of the PostgreSQL source through the real `tributary run`
// binary, the pipeline, ClickHouse and the checkpoint store.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/jackc/pgx/v5"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary built for the end-to-end tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// tributaryBinary builds the binary once per run (without -race: it is killed
// and restarted many times).
func tributaryBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pgrepl-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tributary")
		cmd := osexec.Command("go", "build", "-o", binPath, "../..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		l.b.Reset()
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// process is one running tributary.
type process struct {
	cmd  *osexec.Cmd
	out  *lockedBuffer
	done chan error
	err  error
	over bool
}

func run(t testing.TB, args ...string) *process {
	t.Helper()
	cmd := osexec.Command(tributaryBinary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRIBUTARY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	p := &process{cmd: cmd, out: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start tributary: %v", err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if !p.over {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// exited reports whether the process ended on its own.
func (p *process) exited() bool {
	if p.over {
		return true
	}
	select {
	case p.err = <-p.done:
		p.over = true
	default:
	}
	return p.over
}

func (p *process) signal(t testing.TB, sig syscall.Signal) error {
	t.Helper()
	if p.exited() {
		t.Fatalf("tributary ended before %v (%v):\n%s", sig, p.err, p.out.String())
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case p.err = <-p.done:
		p.over = true
	case <-time.After(20 * time.Second):
		t.Fatalf("tributary still running 20s after %v:\n%s", sig, p.out.String())
	}
	return p.err
}

func pgArgs(dsn, chAddr, db string, extra ...string) []string {
	return append([]string{"run", "--source", "postgres", "--pg.dsn", dsn,
		"--pg.status-interval", "1s", "--pg.reconnect-max", "1s",
		"--clickhouse.addr", chAddr, "--clickhouse.database", db,
		"--pipeline.name", "pg", "--pipeline.batch-events", "5000", "--pipeline.batch-age", "200ms",
		"--web.listen-address", "", "--log.level", "info"}, extra...)
}

// chCount returns count() of db.events FINAL.
func chCount(conn driver.Conn, db string) uint64 {
	var n uint64
	_ = conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".events FINAL").Scan(&n)
	return n
}

// waitCount waits until db.events holds want events.
func waitCount(t testing.TB, conn driver.Conn, db string, want uint64, timeout time.Duration, p *process) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var n uint64
	for time.Now().Before(deadline) {
		if n = chCount(conn, db); n >= want {
			return
		}
		if p != nil && p.exited() {
			t.Fatalf("tributary exited (%v) with %d of %d events:\n%s", p.err, n, want, p.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s with %d of %d events in %s", timeout, n, want, db)
}

// TestPipelineKillRestartExact replicates 200,000 rows written while
// tributary is killed with SIGKILL ten times at random moments and restarted;
// ClickHouse ends with exactly the table's rows (count, locator checksum, data
// length checksum) and the slot stands at the checkpoint.
func TestPipelineKillRestartExact(t *testing.T) {
	pg := testenv.Postgres(t)
	ch := testenv.ClickHouse(t)
	ctx := testenv.Context(t, 5*time.Minute)
	exec(t, pg.Conn, fmt.Sprintf(createTableSQL, "socotra_events"))
	const total = 200_000
	exec(t, pg.Conn, insertSQL("socotra_events", 1, 20000)) // some history for the snapshot
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		wc, err := pgx.Connect(ctx, pg.DSN)
		if err != nil {
			t.Errorf("writer: %v", err)
			return
		}
		defer wc.Close(context.Background())
		for i := 20001; i <= total; i += 200 {
			if _, err := wc.Exec(ctx, insertSQL("socotra_events", i, i+199)); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			time.Sleep(15 * time.Millisecond)
		}
	}()
	args := pgArgs(pg.DSN, ch.Addr, ch.Database)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for kill := 1; kill <= 10; kill++ {
		p := run(t, args...)
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		_ = p.signal(t, syscall.SIGKILL)
		t.Logf("kill %d: %d events in ClickHouse", kill, chCount(ch.Conn, ch.Database))
	}
	wg.Wait()
	p := run(t, args...)
	waitCount(t, ch.Conn, ch.Database, total, 3*time.Minute, p)
	waitOutput(t, p, "replication started", 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	if err := p.signal(t, syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, p.out.String())
	}

	var n, uniq, idSum, dataLen uint64
	q := fmt.Sprintf(`SELECT count(), uniqExact(locator), sum(toUInt64(substring(locator, 4))), sum(length(data))
		FROM %s.events FINAL`, ch.Database)
	if err := ch.Conn.QueryRow(context.Background(), q).Scan(&n, &uniq, &idSum, &dataLen); err != nil {
		t.Fatal(err)
	}
	var wantLen int64
	if err := pg.Conn.QueryRow(ctx, "SELECT sum(octet_length(data::text)) FROM socotra_events").Scan(&wantLen); err != nil {
		t.Fatal(err)
	}
	got := []uint64{n, uniq, idSum, dataLen}
	want := []uint64{total, total, total * (total + 1) / 2, uint64(wantLen)}
	names := []string{"events", "distinct locators", "locator checksum", "data length"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: got %d, want %d", names[i], got[i], want[i])
		}
	}
	var pos string
	if err := ch.Conn.QueryRow(context.Background(), "SELECT position FROM "+ch.Database+"._tributary_checkpoints FINAL WHERE pipeline = 'pg'").Scan(&pos); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if got, want := slotConfirmed(t, pg.Conn, DefaultConfig().Slot), lsnOf(t, testPosition(pos)); got != want {
		t.Errorf("slot confirmed_flush_lsn %s, checkpoint %s: want equal after a clean stop", got, pos)
	}
}

// waitOutput waits until the process has logged want.
func waitOutput(t testing.TB, p *process, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.out.String(), want) {
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("no %q in the output:\n%s", want, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSameRowsAsAPISource: the emulator writes its history into PostgreSQL and
// serves it over HTTP; one pipeline per source replicates it (and events
// appended live) into two ClickHouse databases, which end with identical rows
// in every table.
func TestSameRowsAsAPISource(t *testing.T) {
	pg := testenv.Postgres(t)
	ch := testenv.ClickHouse(t)
	const preload, live = 20000, 3000
	emu, err := emulator.New(emulator.Config{Flavor: emulator.FlavorSuite, Seed: 11, Events: preload, Policies: 800, PGDSN: pg.DSN})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()

	pgDB := testenv.Name("pg_")
	t.Cleanup(func() { _ = ch.Conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgDB) })
	api := run(t, "run", "--source", "api", "--api.flavor", "suite", "--api.url", srv.URL, "--api.tenant", emu.Tenant(),
		"--api.start", "2000-01-01T00:00:00Z", "--api.page-size", "1000", "--api.poll-interval", "200ms",
		"--clickhouse.addr", ch.Addr, "--clickhouse.database", ch.Database,
		"--pipeline.name", "api", "--pipeline.batch-age", "200ms", "--web.listen-address", "", "--log.level", "info")
	pgp := run(t, pgArgs(pg.DSN, ch.Addr, pgDB)...)
	waitCount(t, ch.Conn, pgDB, preload, 2*time.Minute, pgp)
	emu.Append(live)
	want := uint64(len(emu.Events()))
	waitCount(t, ch.Conn, ch.Database, want, 2*time.Minute, api)
	waitCount(t, ch.Conn, pgDB, want, 2*time.Minute, pgp)
	for _, p := range []*process{api, pgp} {
		if err := p.signal(t, syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM: %v\n%s", err, p.out.String())
		}
	}
	for _, tbl := range mapping.DefaultSchema().Tables {
		cols := dataCols(t, ch.Conn, ch.Database, tbl.Name)
		a, b := tableSum(t, ch.Conn, ch.Database, tbl.Name, cols), tableSum(t, ch.Conn, pgDB, tbl.Name, cols)
		if a != b {
			t.Errorf("table %s: API source %v, PostgreSQL source %v (rows, checksum)", tbl.Name, a, b)
			for _, c := range cols {
				if x, y := tableSum(t, ch.Conn, ch.Database, tbl.Name, []string{c}), tableSum(t, ch.Conn, pgDB, tbl.Name, []string{c}); x != y {
					t.Errorf("table %s: column %s differs", tbl.Name, c)
				}
			}
		} else if a[0] == 0 && tbl.Name == "events" {
			t.Errorf("table %s is empty", tbl.Name)
		} else {
			t.Logf("table %s: %d rows, identical", tbl.Name, a[0])
		}
	}
}

// dataCols lists the data columns of db.table (not the _bookkeeping ones).
func dataCols(t testing.TB, conn driver.Conn, db, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT name FROM system.columns WHERE database = ? AND table = ? ORDER BY name", db, table)
	if err != nil {
		t.Fatal(err)
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
	return cols
}

// tableSum is the deduplicated row count and a checksum of cols.
func tableSum(t testing.TB, conn driver.Conn, db, table string, cols []string) [2]uint64 {
	t.Helper()
	var s [2]uint64
	q := fmt.Sprintf("SELECT count(), sum(cityHash64(%s)) FROM %s.%s FINAL", strings.Join(cols, ", "), db, table)
	if err := conn.QueryRow(context.Background(), q).Scan(&s[0], &s[1]); err != nil {
		t.Fatalf("checksum of %s.%s: %v", db, table, err)
	}
	return s
}
