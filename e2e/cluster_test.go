package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tributary-cdc/tributary/checkpoint/chstore"
	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
)

// clusterEmulator is the emulator of the cluster tests: 200,000 events with
// its faults on.
func clusterEmulator(t *testing.T) (*emulator.Server, string) {
	t.Helper()
	emu, err := emulator.New(emulator.Config{
		Flavor: emulator.FlavorSuite, Seed: 42, Events: 200_000, Policies: 5000,
		// Appended events carry the wall-clock time, so that they fall in
		// the live tail after the parallel backfill of the history.
		LiveClock: true,
		Faults: emulator.FaultConfig{
			ErrorRate: 0.03, ThrottleRate: 0.02, RetryAfter: time.Second,
			MalformedRate: 0.02, TruncateRate: 0.02, DuplicateRate: 0.1,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	srv := httptest.NewServer(emu.Handler())
	t.Cleanup(srv.Close)
	return emu, srv.URL
}

// expectedOn writes the emulator's events with the production mapping into a
// fresh plain database on the server at addr (dropped at the test's end) and
// returns a connection to that server and the database's name.
func expectedOn(t *testing.T, addr string, events []source.Event) (driver.Conn, string) {
	t.Helper()
	ctx := context.Background()
	db := testenv.Name("want_")
	cfg := chsink.DefaultConfig()
	cfg.Addr = []string{addr}
	cfg.Database = db
	snk, err := chsink.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("expected sink: %v", err)
	}
	t.Cleanup(func() {
		_ = snk.Conn().Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		snk.Close()
	})
	if err := snk.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		t.Fatalf("expected schema: %v", err)
	}
	for start := 0; start < len(events); start += 20000 {
		rows := mapping.NewRows()
		mapping.Map(source.Batch{Events: events[start:min(start+20000, len(events))]}, mapping.Options{Pipeline: "expected"}, rows)
		if err := snk.Write(ctx, rows); err != nil {
			t.Fatalf("write expected rows: %v", err)
		}
	}
	return snk.Conn(), db
}

// assertSameAs fails unless every table of gotDB on got (read through
// table+suffix) holds exactly the rows of wantDB on want: count and checksum
// of the data columns under FINAL.
func assertSameAs(t *testing.T, node string, want driver.Conn, wantDB string, got driver.Conn, gotDB, suffix string) {
	t.Helper()
	for _, tbl := range tableNames() {
		cols := testenv.DataColumns(t, want, wantDB, tbl)
		w := testenv.TableFingerprint(t, want, wantDB, tbl, cols)
		g := testenv.TableFingerprint(t, got, gotDB, tbl+suffix, cols)
		switch {
		case g != w:
			t.Errorf("%s: table %s%s: %d rows (checksum %d), want %d rows (checksum %d)", node, tbl, suffix, g.Rows, g.Sum, w.Rows, w.Sum)
		case w.Rows == 0 && tbl == mapping.TableEvents:
			t.Errorf("%s: table %s is empty", node, tbl)
		default:
			t.Logf("%s: table %s%s: %d rows, identical", node, tbl, suffix, g.Rows)
		}
	}
}

// countOn returns the events of db (FINAL) through table on conn; 0 on error.
func countOn(conn driver.Conn, db, table string) uint64 {
	var n uint64
	_ = conn.QueryRow(context.Background(), "SELECT count() FROM "+db+"."+table+" FINAL").Scan(&n)
	return n
}

// waitCount polls until count() reaches at least want, or fails after timeout
// (generous: two cores shared with other builds make a run several times
// slower than alone).
func waitCount(t *testing.T, what string, count func() uint64, want uint64, timeout time.Duration, alive func() error) uint64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var n uint64
	for time.Now().Before(deadline) {
		if n = count(); n >= want {
			return n
		}
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("waiting for %d events in %s (have %d): %v", want, what, n, err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %d events in %s (have %d)", timeout, want, what, n)
	return n
}

// killTributary starts and SIGKILLs tributary times times, each time once it
// has written more events than before (so every kill lands mid-stream),
// after a further random 0–1 s.
func killTributary(t *testing.T, times int, args []string, count func() uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for kill := 1; kill <= times; kill++ {
		before := count()
		p := testenv.Start(t, args...)
		waitCount(t, "ClickHouse", count, before+1, 4*time.Minute, p.Alive)
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		if err := p.Alive(); err != nil {
			t.Fatal(err)
		}
		p.Kill(t)
		t.Logf("tributary kill %d: %d events in ClickHouse (%d before it started)", kill, count(), before)
	}
}

// TestClusterReplicaLossExact: tributary writes to a cluster of one shard and
// two replicas (--clickhouse.addr lists both) from the emulator with faults
// on. It is SIGKILLed several times; the replica in use is SIGKILLed
// mid-stream, /readyz says the pipeline is degraded while the other replica
// takes the writes, tributary is SIGKILLed again and resumes from the
// checkpoint the surviving replica holds, and the lost replica comes back
// and catches up by replication. Both replicas end with exactly the
// emulator's events in every table, and the same checkpoint.
func TestClusterReplicaLossExact(t *testing.T) {
	t.Parallel() // its own cluster, the two shards' test the other
	c := testenv.Cluster(t, "tributary_1x2")
	emu, url := clusterEmulator(t)
	want := emu.Events()
	total := uint64(len(want))
	web := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := apiArgs(url, emu.Tenant(), c.Flags(), "--web.listen-address", web)
	a, b := c.Open(t, 0), c.Open(t, 1)
	onB := func() uint64 { return countOn(b, c.Database, "events") }

	killTributary(t, 3, args, onB)

	// The replica in use (the first address) dies mid-stream.
	p := testenv.Start(t, args...)
	mid := waitCount(t, "replica b", onB, total/3, 10*time.Minute, p.Alive)
	c.Nodes[0].Kill(t)
	t.Logf("replica a SIGKILLed with %d events on replica b", mid)
	body := waitBody(t, p, "http://"+web+"/readyz", 200, "degraded")
	if !strings.Contains(body, c.Nodes[0].Addr) {
		t.Errorf("/readyz while replica a is down: %q, want it to name %s", body, c.Nodes[0].Addr)
	}
	t.Logf("/readyz: %s", strings.TrimSpace(body))
	more := waitCount(t, "replica b", onB, mid+20_000, 4*time.Minute, p.Alive)
	t.Logf("the pipeline went on through replica b: %d events", more)

	// tributary dies too, and resumes from the checkpoint on replica b.
	p.Kill(t)
	p = testenv.Start(t, args...)
	waitCount(t, "replica b", onB, more+10_000, 4*time.Minute, p.Alive)
	c.Nodes[0].Start(t)
	t.Logf("replica a back with %d events on replica b", onB())
	waitCount(t, "replica b", onB, total, 10*time.Minute, p.Alive)

	// Once replica a answers again and new events arrive, the degraded
	// state ends (a connection lives at most 10 s, then the first address
	// is tried again).
	deadline := time.Now().Add(time.Minute)
	for {
		emu.Append(10)
		code, body, _ := getText("http://" + web + "/readyz")
		if code == 200 && !strings.Contains(body, "degraded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz a minute after replica a came back: %d %q", code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	want = emu.Events()
	total = uint64(len(want))
	waitCount(t, "replica b", onB, total, time.Minute, p.Alive)
	if code, took := p.Stop(t); code != 0 {
		t.Errorf("SIGTERM: exit code %d after %s; output:\n%s", code, took, p.Output())
	}

	c.SyncReplicas(t, a)
	c.SyncReplicas(t, b)
	wantConn, wantDB := expectedOn(t, c.Nodes[0].Addr, toSource(want, source.FlavorSuite))
	var cps []string
	for i, conn := range []driver.Conn{a, b} {
		node := "replica " + string(rune('a'+i))
		assertSameAs(t, node, wantConn, wantDB, conn, c.Database, "")
		cp, found, err := chstore.New(conn, c.Database).Load(context.Background(), "e2e")
		if err != nil || !found || cp.Events < total {
			t.Errorf("%s: checkpoint %+v, found %v, %v; want one counting at least %d events", node, cp, found, err, total)
		}
		cps = append(cps, fmt.Sprintf("%s@%d", cp.Position, cp.Events))
	}
	if cps[0] != cps[1] {
		t.Errorf("the replicas' checkpoints differ: %q", cps)
	}
}

// TestClusterShardsExact: tributary writes to a cluster of two shards through
// the Distributed tables, SIGKILLed several times. The Distributed tables
// hold exactly the emulator's events in every table, both shards hold some,
// and no event's child rows are on another shard than the event.
func TestClusterShardsExact(t *testing.T) {
	t.Parallel()
	c := testenv.Cluster(t, "tributary_2x1")
	emu, url := clusterEmulator(t)
	want := emu.Events()
	args := apiArgs(url, emu.Tenant(), c.Flags())
	first := c.Open(t, 0)
	count := func() uint64 { return countOn(first, c.Database, "events_all") }

	killTributary(t, 3, args, count)
	p := testenv.Start(t, args...)
	waitCount(t, "events_all", count, uint64(len(want)), 10*time.Minute, p.Alive)
	if code, took := p.Stop(t); code != 0 {
		t.Errorf("SIGTERM: exit code %d after %s; output:\n%s", code, took, p.Output())
	}

	wantConn, wantDB := expectedOn(t, c.Nodes[0].Addr, toSource(want, source.FlavorSuite))
	assertSameAs(t, "Distributed tables", wantConn, wantDB, first, c.Database, chsink.DistributedSuffix)
	for i := range c.Nodes {
		conn := c.Open(t, i)
		var events, stray uint64
		q := fmt.Sprintf(`SELECT
			(SELECT count() FROM %[1]s.events FINAL),
			(SELECT count() FROM %[1]s.event_policies FINAL WHERE event_locator NOT IN (SELECT locator FROM %[1]s.events))
			+ (SELECT count() FROM %[1]s.policy_status_changes FINAL WHERE event_locator NOT IN (SELECT locator FROM %[1]s.events))`, c.Database)
		if err := conn.QueryRow(context.Background(), q).Scan(&events, &stray); err != nil {
			t.Fatalf("shard %d: %v", i+1, err)
		}
		t.Logf("shard %d: %d events", i+1, events)
		if events == 0 || events == uint64(len(want)) {
			t.Errorf("shard %d holds %d of %d events", i+1, events, len(want))
		}
		if stray != 0 {
			t.Errorf("shard %d: %d child rows whose event is on the other shard", i+1, stray)
		}
		c.SyncReplicas(t, conn) // the checkpoint table's replica on this node
		cp, found, err := chstore.New(conn, c.Database).Load(context.Background(), "e2e")
		if err != nil || !found || cp.Events < uint64(len(want)) {
			t.Errorf("shard %d: checkpoint %+v, found %v, %v", i+1, cp, found, err)
		}
	}
}
