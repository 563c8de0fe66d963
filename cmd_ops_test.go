package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source/pgrepl"
)

// TestStatusAndVerify replicates an emulated book with the built binary,
// reads it back with status (store and --web.url), checks that verify finds
// no difference, deletes one row and every row of one day in ClickHouse,
// and checks that verify names both and exits 1.
func TestStatusAndVerify(t *testing.T) {
	testenv.ForEachClickHouse(t, testStatusAndVerify)
}

func testStatusAndVerify(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, 3*time.Minute)
	emu, err := emulator.New(emulator.Config{Seed: 21, Events: 600, Policies: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	evs := emu.Events()
	api := []string{"--source", "api", "--api.url", srv.URL, "--api.tenant", emu.Tenant(), "--pipeline.name", "ops"}
	p := testenv.Start(t, append(append([]string{"run", "--api.start", "2000-01-01", "--api.poll-interval", "100ms",
		"--pipeline.batch-age", "100ms", "--web.listen-address", "127.0.0.1:0"}, api...), ch.Flags()...)...)
	testenv.WaitEvents(t, ch.Conn, ch.Database, uint64(len(evs)), time.Minute, p.Alive)
	p.WaitOutput(t, "caught up", 30*time.Second)
	m := regexp.MustCompile(`"msg":"serving /metrics, /healthz and /readyz","address":"([^"]+)"`).FindStringSubmatch(p.Output())
	if m == nil {
		t.Fatalf("no web address in the log:\n%s", p.Output())
	}
	last := evs[len(evs)-1]
	with := func(args ...string) []string { return append(args, ch.Flags()...) }
	deadline := time.Now().Add(30 * time.Second)
	for { // the checkpoint follows the rows
		var out, errOut strings.Builder
		dispatch(with("checkpoint", "show", "--pipeline", "ops"), &out, &errOut)
		if strings.Contains(out.String(), fmt.Sprintf("events written:   %d", len(evs))) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	runCmdCases(t, []cmdCase{
		{"status with the process", with("status", "--web.url", "http://"+m[1]), 0, []string{
			"pipeline:         ops",
			"source:           event-stream API, suite flavor, tenant " + emu.Tenant(),
			"position:         " + last.Timestamp.UTC().Format(time.RFC3339Nano) + " (the newest event written), paging token ",
			fmt.Sprintf("events written:   %d", len(evs)),
			"last checkpoint:  ", "lag:              ", "rejects:          0", "backfill windows: none",
			"process:          http://" + m[1] + ": ready", fmt.Sprintf("process events:   %d read, %d written, 0 rejected since it started", len(evs), len(evs)), "process lag:      "}},
		{"status of an unknown pipeline", with("status", "--pipeline", "nope"), 1, []string{`pipeline "nope" has no checkpoint`, "pipelines there: ops"}},
		{"status of an unknown database", append(with("status"), "--clickhouse.database", "no_such_db"), 1, []string{`no database "no_such_db"`, ch.Database}},
		{"status of a process that is not there", with("status", "--web.url", "http://127.0.0.1:1"), 1, []string{"process:          http://127.0.0.1:1 did not answer"}},
	})
	if code, _ := p.Stop(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d:\n%s", code, p.Output())
	}

	verify := with(append([]string{"verify", "--from", "2000-01-01", "--to", time.Now().UTC().Format(time.RFC3339), "--pipeline", "ops"}, api[:6]...)...)
	runCmdCases(t, []cmdCase{{"verify, nothing changed", verify, 0, []string{fmt.Sprintf("the source has %d events, ClickHouse (%s.events FINAL) %d", len(evs), ch.Database, len(evs)), "no difference"}}})

	// One row deleted, and every row of another day.
	gone := evs[len(evs)/4]
	day := evs[len(evs)*3/4].Timestamp.UTC().Format("2006-01-02")
	if gone.Timestamp.UTC().Format("2006-01-02") == day {
		t.Fatalf("pick another row: %s is on %s", gone.Locator, day)
	}
	var dayEvents int
	for _, e := range evs {
		if e.Timestamp.UTC().Format("2006-01-02") == day {
			dayEvents++
		}
	}
	for _, q := range []string{
		"ALTER TABLE " + ch.Database + ".events DELETE WHERE locator = '" + gone.Locator + "'",
		"ALTER TABLE " + ch.Database + ".events DELETE WHERE toDate(timestamp) = '" + day + "'",
	} {
		if err := ch.Conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	want := uint64(len(evs) - dayEvents - 1)
	for n := uint64(0); ; time.Sleep(200 * time.Millisecond) {
		if n, err = testenv.CountEvents(ctx, ch.Conn, ch.Database); err != nil || n == want || ctx.Err() != nil {
			break
		}
	}
	runCmdCases(t, []cmdCase{{"verify after deletes", verify, 1, []string{
		fmt.Sprintf("%s: missing in ClickHouse: the source has %d events that day (", day, dayEvents),
		fmt.Sprintf("%s %s: the source has ", gone.Timestamp.UTC().Format("2006-01-02"), gone.Type), "(1 missing in ClickHouse)",
		"2 differences",
		fmt.Sprintf("%s missing in ClickHouse: 1 events: %s (%s)", gone.Timestamp.UTC().Format("2006-01-02"), gone.Locator, gone.Type),
		fmt.Sprintf("%s missing in ClickHouse: %d events: ", day, dayEvents)}}})
}

// TestRunWrongTokenCreatesNothing: a token the API refuses stops run (exit
// 1) before any ClickHouse DDL: the database is not even created.
func TestRunWrongTokenCreatesNothing(t *testing.T) {
	testenv.ForEachClickHouse(t, func(t *testing.T, ch *testenv.ClickHouseServer) {
		emu, err := emulator.New(emulator.Config{Seed: 2, Events: 10, Token: "right"})
		if err != nil {
			t.Fatal(err)
		}
		defer emu.Close()
		srv := httptest.NewServer(emu.Handler())
		defer srv.Close()
		db := testenv.Name("never_")
		p := testenv.Start(t, "run", "--api.url", srv.URL, "--api.tenant", emu.Tenant(), "--api.token", "wrong", "--api.start", "2000-01-01",
			"--clickhouse.addr", ch.Addr, "--clickhouse.database", db, "--web.listen-address", "")
		if code := p.Wait(t, 30*time.Second); code != 1 || !strings.Contains(p.Output(), "try the source") || !strings.Contains(p.Output(), "HTTP 401") {
			t.Fatalf("run with a wrong token: exit %d, want 1 naming the 401:\n%s", code, p.Output())
		}
		var n uint64
		if err := ch.Conn.QueryRow(context.Background(), "SELECT count() FROM system.databases WHERE name = ?", db).Scan(&n); err != nil || n != 0 {
			t.Errorf("database %s exists after a refused token (%d, %v)", db, n, err)
		}
	})
}

// TestVerifyReadsPostgres: verify's PostgreSQL side reads the table's
// events in [from, to) with plain SQL, as the emulator wrote them; one row
// deleted from the table shows as a difference.
func TestVerifyReadsPostgres(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	pg := testenv.Postgres(t)
	table := testenv.Name("events_")
	emu, err := emulator.New(emulator.Config{Seed: 4, Events: 300, PGDSN: pg.DSN, PGTable: table})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	evs := emu.Events()
	from, to := evs[10].Timestamp, evs[250].Timestamp // [from, to): both ends matter
	want := newTally(nil)
	for _, e := range evs {
		if !e.Timestamp.Before(from) && e.Timestamp.Before(to) {
			want.add(e.Locator, e.Type, e.Timestamp)
		}
	}
	cfg := pgrepl.DefaultConfig()
	cfg.DSN, cfg.Table = pg.DSN, table
	got := newTally(nil)
	if err := readPGRange(ctx, cfg, from, to, got); err != nil {
		t.Fatal(err)
	}
	if d, _ := compareTallies(want, got); len(d) > 0 || got.total != want.total {
		t.Errorf("the table read back: %d events, want %d; differences %q", got.total, want.total, d)
	}
	if _, err := pg.Conn.Exec(ctx, "DELETE FROM "+table+" WHERE locator = $1", evs[100].Locator); err != nil {
		t.Fatal(err)
	}
	got = newTally(nil)
	if err := readPGRange(ctx, cfg, from, to, got); err != nil {
		t.Fatal(err)
	}
	d, _ := compareTallies(want, got)
	if len(d) != 1 || !strings.Contains(d[0], evs[100].Type+": the source has ") {
		t.Errorf("after deleting one row: differences %q, want one for %s", d, evs[100].Type)
	}
}

// TestStatusAndVerifyOnShards: on a cluster of two shards, run writes
// through the Distributed tables and status and verify read them (each
// shard's own tables hold only part of the events).
func TestStatusAndVerifyOnShards(t *testing.T) {
	c := testenv.Cluster(t, "tributary_2x1")
	emu, err := emulator.New(emulator.Config{Seed: 22, Events: 600, Policies: 40})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	srv := httptest.NewServer(emu.Handler())
	defer srv.Close()
	evs := emu.Events()
	api := []string{"--source", "api", "--api.url", srv.URL, "--api.tenant", emu.Tenant(), "--pipeline.name", "ops"}
	p := testenv.Start(t, append(append([]string{"run", "--api.start", "2000-01-01", "--api.poll-interval", "100ms",
		"--pipeline.batch-age", "100ms", "--web.listen-address", ""}, api...), c.Flags()...)...)
	p.WaitOutput(t, "caught up", time.Minute)
	if code, _ := p.Stop(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d:\n%s", code, p.Output())
	}
	with := func(args ...string) []string { return append(args, c.Flags()...) }
	verify := with(append([]string{"verify", "--from", "2000-01-01", "--to", time.Now().UTC().Format(time.RFC3339), "--pipeline", "ops"}, api[:6]...)...)
	runCmdCases(t, []cmdCase{
		{"status", with("status", "--pipeline", "ops"), 0, []string{fmt.Sprintf("events written:   %d", len(evs)), "rejects:          0"}},
		{"verify", verify, 0, []string{fmt.Sprintf("the source has %d events, ClickHouse (%s.events_all FINAL) %d", len(evs), c.Database, len(evs)), "no difference"}},
	})
}
