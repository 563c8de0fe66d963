package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// apiArgs returns the arguments of a run against the emulator at srvURL,
// writing to ClickHouse with chFlags (ClickHouseServer.Flags).
func apiArgs(srvURL, tenant string, chFlags []string, extra ...string) []string {
	args := []string{
		"run", "--source", "api",
		"--api.flavor", "suite", "--api.url", srvURL, "--api.tenant", tenant,
		"--api.start", "2000-01-01T00:00:00Z", "--api.page-size", "1000",
		"--api.max-backoff", "1s", "--api.poll-interval", "200ms",
		"--pipeline.name", "e2e", "--pipeline.batch-events", "5000", "--pipeline.batch-age", "200ms",
		"--web.listen-address", "", "--log.level", "info",
	}
	args = append(args, chFlags...)
	return append(args, extra...)
}

// TestAPIKillRestartExact replicates 200,000 events from the emulator with its
// faults switched on, in a parallel backfill of time windows (8 readers),
// kills tributary with SIGKILL at random moments (ten times) and restarts
// it, then checks that ClickHouse holds exactly the emulator's events and
// derived rows: no loss, no duplicate. Every answer of the emulator takes
// 200 ms and pages hold 250 events, so the backfill lasts at least 20 s
// (800 pages, 100 rounds of 8 requests), more with the pauses of the 429s
// and the limit halved on 5xx. Each run is killed at a random moment within
// a second after it saved a new checkpoint (about half a second after its
// start: the authenticated probe, a page, the write), so the ten runs read
// for about 15 s: the kills fall during the parallel backfill whatever the
// machine's speed (a slower one reads less), and leave checkpoints of
// windows.
func TestAPIKillRestartExact(t *testing.T) {
	testenv.ForEachClickHouse(t, testAPIKillRestartExact)
}

func testAPIKillRestartExact(t *testing.T, ch *testenv.ClickHouseServer) {
	const total = 200_000
	emu, err := emulator.New(emulator.Config{
		Flavor: emulator.FlavorSuite, Seed: 42, Events: total, Policies: 5000, // about a year of history
		Faults: emulator.FaultConfig{
			Latency:   200 * time.Millisecond,
			ErrorRate: 0.02, ThrottleRate: 0.01, RetryAfter: time.Second,
			MalformedRate: 0.02, TruncateRate: 0.02, DuplicateRate: 0.1,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	want := emu.Events()
	args := apiArgs(srv.URL, emu.Tenant(), ch.Flags(), "--api.backfill-concurrency", "8", "--api.page-size", "250")

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	position := func() string {
		var pos string
		_ = ch.Conn.QueryRow(context.Background(), "SELECT position FROM "+ch.Database+"._tributary_checkpoints FINAL WHERE pipeline = 'e2e'").Scan(&pos)
		return pos
	}
	kills, windowed := 0, 0
	for kills < 10 {
		before := position()
		p := testenv.Start(t, args...)
		for deadline := time.Now().Add(time.Minute); position() == before; time.Sleep(20 * time.Millisecond) {
			if err := p.Alive(); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new checkpoint after a minute; output:\n%s", p.Output())
			}
		}
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		if err := p.Alive(); err != nil {
			t.Fatal(err)
		}
		p.Kill(t)
		kills++
		n, _ := testenv.CountEvents(context.Background(), ch.Conn, ch.Database)
		pos := position()
		if strings.HasPrefix(pos, "windows=") {
			windowed++
		}
		t.Logf("kill %d: %d events in ClickHouse, checkpoint %.80s", kills, n, pos)
	}
	if windowed < 10 {
		t.Errorf("%d of 10 kills left a checkpoint of backfill windows, want all: the kills did not fall during the parallel backfill", windowed)
	}
	p := testenv.Start(t, args...)
	last := time.Now()
	// The rest of the backfill at 200 ms per answer, with the limit halved
	// on every 5xx and paused by every 429: 1–2 minutes on a quiet machine,
	// 4 on one loaded by other builds.
	testenv.WaitEvents(t, ch.Conn, ch.Database, uint64(len(want)), 10*time.Minute, p.Alive)
	t.Logf("the last run wrote the rest in %s", time.Since(last).Round(time.Millisecond))
	// Every row is in, but a window is over only once its reader has seen
	// the window's end (one more answer, at 200 ms and with faults) and the
	// next checkpoint says so.
	for deadline := time.Now().Add(2 * time.Minute); strings.HasPrefix(position(), "windows=") && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := p.Alive(); err != nil {
			t.Fatal(err)
		}
	}
	code, took := p.Stop(t)
	if code != 0 || took > 10*time.Second {
		t.Errorf("SIGTERM: exit code %d after %s, want 0 within 10s; output:\n%s", code, took, p.Output())
	}
	// The backfill is over: the position is the live tail's token alone.
	if pos := position(); pos == "" || strings.HasPrefix(pos, "windows=") {
		t.Errorf("after the backfill the checkpoint is %.120q, want the tail's paging token", pos)
	}

	wantDB := testenv.Name("want_")
	t.Cleanup(func() { _ = ch.Conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+wantDB) })
	writeExpected(t, ch, wantDB, toSource(want, source.FlavorSuite))
	testenv.AssertSameTables(t, ch.Conn, ch.Database, wantDB, tableNames())

	// Nothing beyond the emulator's events, and a checksum over locators.
	var extra, sumGot, sumWant uint64
	q := fmt.Sprintf(`SELECT
		(SELECT count() FROM %[1]s.events FINAL WHERE locator NOT IN (SELECT locator FROM %[2]s.events)),
		(SELECT sum(cityHash64(locator)) FROM %[1]s.events FINAL),
		(SELECT sum(cityHash64(locator)) FROM %[2]s.events FINAL)`, ch.Database, wantDB)
	if err := ch.Conn.QueryRow(context.Background(), q).Scan(&extra, &sumGot, &sumWant); err != nil {
		t.Fatal(err)
	}
	if extra != 0 || sumGot != sumWant {
		t.Errorf("events: %d not from the emulator; locator checksum %d, want %d", extra, sumGot, sumWant)
	}
	// The checkpoint counts the events written, replays included: at least all.
	var cpEvents uint64
	if err := ch.Conn.QueryRow(context.Background(), "SELECT events FROM "+ch.Database+"._tributary_checkpoints FINAL WHERE pipeline = 'e2e'").Scan(&cpEvents); err != nil {
		t.Fatalf("checkpoint row: %v", err)
	}
	if cpEvents < uint64(len(want)) {
		t.Errorf("checkpoint says %d events written, want at least %d", cpEvents, len(want))
	}
}

// TestAPILiveTail follows a live emulator: events appended after tributary
// caught up must be in ClickHouse within 2 seconds. The history is read as a
// parallel backfill of time windows, then the tail window goes on live: the
// appended events carry the wall-clock time (LiveClock), as a real tenant's
// do, so they fall in the tail (an event stamped in the past, behind the
// backfill margin, would be in a window already read).
func TestAPILiveTail(t *testing.T) {
	testenv.ForEachClickHouse(t, testAPILiveTail)
}

func testAPILiveTail(t *testing.T, ch *testenv.ClickHouseServer) {
	emu, err := emulator.New(emulator.Config{Flavor: emulator.FlavorSuite, Seed: 7, Events: 2000, LiveClock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	web := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := testenv.Start(t, apiArgs(srv.URL, emu.Tenant(), ch.Flags(), "--web.listen-address", web)...)
	testenv.WaitEvents(t, ch.Conn, ch.Database, uint64(emu.Len()), time.Minute, p.Alive)
	checkWeb(t, "http://"+web, uint64(emu.Len()))
	for round := range 5 {
		added := emu.Append(50)
		last := added[len(added)-1].Locator
		begin := time.Now()
		for {
			var n uint64
			if err := ch.Conn.QueryRow(context.Background(), "SELECT count() FROM "+ch.Database+".events WHERE locator = ?", last).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				break
			}
			if time.Since(begin) > 2*time.Second {
				t.Fatalf("round %d: event %s not in ClickHouse 2 s after it was appended", round, last)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("round %d: 50 new events arrived in %s", round, time.Since(begin).Round(time.Millisecond))
	}
	if code, took := p.Stop(t); code != 0 {
		t.Errorf("SIGTERM: exit code %d after %s; output:\n%s", code, took, p.Output())
	}
	if n, err := testenv.CountEvents(context.Background(), ch.Conn, ch.Database); err != nil || n != uint64(emu.Len()) {
		t.Errorf("after the live rounds: %d events (%v), want %d", n, err, emu.Len())
	}
}

// checkWeb scrapes a running pipeline: /healthz and /readyz answer 200, and
// /metrics counts at least the events written.
func checkWeb(t *testing.T, base string, written uint64) {
	t.Helper()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusOK {
			t.Errorf("GET %s = %d %q, want 200", path, code, body)
		}
	}
	// The counters follow the writes by a moment (the committer records a
	// batch after ClickHouse acknowledged it), so poll a little.
	var body string
	var sum float64
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, body = get("/metrics")
		sum = 0
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "tributary_sink_events_written_total{") {
				f := strings.Fields(line)
				v, err := strconv.ParseFloat(f[len(f)-1], 64)
				if err != nil {
					t.Fatalf("metric line %q: %v", line, err)
				}
				sum += v
			}
		}
		if sum >= float64(written) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sum < float64(written) {
		t.Errorf("tributary_sink_events_written_total sums to %v, want at least %d", sum, written)
	}
	for _, name := range []string{"tributary_pipeline_lag_seconds", "tributary_checkpoint_age_seconds", "tributary_build_info", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
