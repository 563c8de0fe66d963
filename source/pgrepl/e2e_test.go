package pgrepl

// End-to-end proofs of the PostgreSQL source through the real `tributary run`
// binary, the pipeline, ClickHouse and the checkpoint store.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
)

// pgArgs returns the arguments of a run from the PostgreSQL DSN into
// ClickHouse with chFlags (testenv.ClickHouseServer.Flags).
func pgArgs(dsn string, chFlags []string, extra ...string) []string {
	args := append([]string{"run", "--source", "postgres", "--pg.dsn", dsn,
		"--pg.status-interval", "1s",
		"--pipeline.name", "pg", "--pipeline.batch-events", "5000", "--pipeline.batch-age", "200ms",
		"--web.listen-address", "", "--log.level", "info"}, chFlags...)
	return append(args, extra...)
}

// TestPipelineKillRestartExact replicates 200,000 rows written while
// tributary is killed with SIGKILL ten times at random moments and restarted;
// ClickHouse ends with exactly the table's rows (count, locator checksum, data
// length checksum) and the slot stands at the checkpoint.
func TestPipelineKillRestartExact(t *testing.T) {
	testenv.ForEachClickHouse(t, testPipelineKillRestartExact)
}

func testPipelineKillRestartExact(t *testing.T, ch *testenv.ClickHouseServer) {
	pg := testenv.Postgres(t)
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
	args := pgArgs(pg.DSN, ch.Flags())
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for kill := 1; kill <= 10; kill++ {
		p := testenv.Start(t, args...)
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		p.Kill(t)
		n, _ := testenv.CountEvents(ctx, ch.Conn, ch.Database)
		t.Logf("kill %d: %d events in ClickHouse", kill, n)
	}
	wg.Wait()
	p := testenv.Start(t, args...)
	testenv.WaitEvents(t, ch.Conn, ch.Database, total, 3*time.Minute, p.Alive)
	p.WaitOutput(t, "replication started", 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	if code, took := p.Stop(t); code != 0 || took > 10*time.Second {
		t.Errorf("SIGTERM: exit code %d after %s, want 0 within 10s:\n%s", code, took, p.Output())
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

// TestSameRowsAsAPISource: the emulator writes its history into PostgreSQL and
// serves it over HTTP; one pipeline per source replicates it (and events
// appended live) into two ClickHouse databases, which end with identical rows
// in every table.
func TestSameRowsAsAPISource(t *testing.T) {
	testenv.ForEachClickHouse(t, testSameRowsAsAPISource)
}

func testSameRowsAsAPISource(t *testing.T, ch *testenv.ClickHouseServer) {
	pg := testenv.Postgres(t)
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
	apiArgs := append([]string{"run", "--source", "api", "--api.flavor", "suite", "--api.url", srv.URL, "--api.tenant", emu.Tenant(),
		"--api.start", "2000-01-01T00:00:00Z", "--api.page-size", "1000", "--api.poll-interval", "200ms",
		// One sequential reader: the events appended below carry the
		// generated history's times, not the wall clock, so a parallel
		// backfill would count them to a window it already read (a real
		// stream stamps events when written; the backfill margin covers it).
		"--api.backfill-concurrency", "1",
		"--pipeline.name", "api", "--pipeline.batch-age", "200ms", "--web.listen-address", "", "--log.level", "info"}, ch.Flags()...)
	api := testenv.Start(t, apiArgs...)
	pgp := testenv.Start(t, pgArgs(pg.DSN, ch.FlagsVia(ch.Addr, pgDB))...)
	testenv.WaitEvents(t, ch.Conn, pgDB, preload, 2*time.Minute, pgp.Alive)
	emu.Append(live)
	want := uint64(len(emu.Events()))
	testenv.WaitEvents(t, ch.Conn, ch.Database, want, 2*time.Minute, api.Alive)
	testenv.WaitEvents(t, ch.Conn, pgDB, want, 2*time.Minute, pgp.Alive)
	for _, p := range []*testenv.Process{api, pgp} {
		if code, _ := p.Stop(t); code != 0 {
			t.Errorf("SIGTERM: exit code %d:\n%s", code, p.Output())
		}
	}
	var tables []string
	for _, tbl := range mapping.DefaultSchema().Tables {
		tables = append(tables, tbl.Name)
	}
	testenv.AssertSameTables(t, ch.Conn, pgDB, ch.Database, tables)
}

// TestOutageShowsOnReadyz: while PostgreSQL is down, /readyz (answered at
// once) says that the source is failing and why, /healthz stays 200 and the
// process keeps retrying; when PostgreSQL is back, the pipeline reconnects,
// turns ready and replicates the rows written meanwhile, exactly.
func TestOutageShowsOnReadyz(t *testing.T) {
	testenv.ForEachClickHouse(t, testOutageShowsOnReadyz)
}

func testOutageShowsOnReadyz(t *testing.T, ch *testenv.ClickHouseServer) {
	cl := startCluster(t, "logical")
	ctx := testenv.Context(t, 3*time.Minute)
	conn, err := pgx.Connect(ctx, cl.DSN)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, conn, fmt.Sprintf(createTableSQL, "socotra_events"))
	exec(t, conn, insertSQL("socotra_events", 1, 500))
	conn.Close(ctx)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := l.Addr().String()
	l.Close()
	p := testenv.Start(t, pgArgs(cl.DSN, ch.Flags(), "--web.listen-address", web, "--pipeline.failure-grace", "1s", "--pipeline.retry-max", "1s")...)
	testenv.WaitEvents(t, ch.Conn, ch.Database, 500, time.Minute, p.Alive)
	ready := func(code int, want string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		var got int
		var body string
		for time.Now().Before(deadline) {
			begin := time.Now()
			got, body = httpGet(t, "http://"+web+"/readyz")
			if took := time.Since(begin); took > time.Second {
				t.Errorf("/readyz took %s", took)
			}
			if got == code && strings.Contains(body, want) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("/readyz = %d %q, want %d containing %q\n%s", got, body, code, want, p.Output())
	}
	ready(200, "ok")
	if err := cl.stop(); err != nil {
		t.Fatal(err)
	}
	ready(503, "source: failing since")
	_, body := httpGet(t, "http://"+web+"/readyz")
	if !strings.Contains(body, "postgres") {
		t.Errorf("/readyz during the outage = %q, want it to say the PostgreSQL source fails", body)
	}
	if code, _ := httpGet(t, "http://"+web+"/healthz"); code != 200 {
		t.Errorf("/healthz during the outage = %d, want 200", code)
	}
	if err := cl.start(); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, cl.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec(t, conn, insertSQL("socotra_events", 501, 800))
	testenv.WaitEvents(t, ch.Conn, ch.Database, 800, time.Minute, p.Alive)
	ready(200, "ok")
	if code, _ := p.Stop(t); code != 0 {
		t.Errorf("SIGTERM: exit code %d:\n%s", code, p.Output())
	}
	if n, err := testenv.CountEvents(ctx, ch.Conn, ch.Database); err != nil || n != 800 {
		t.Errorf("%d events (%v), want 800", n, err)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
