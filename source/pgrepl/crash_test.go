package pgrepl

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// TestStopAndResumeLoop stops the source ten times at random points, during
// the copy and while rows stream in, and resumes each time from the last
// "checkpoint" (the position of the last batch taken): the union of what was
// taken holds every row.
func TestStopAndResumeLoop(t *testing.T) {
	f := newFixture(t)
	ctx := testenv.Context(t, 2*time.Minute)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 1, 3000))
	const total = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		wc, err := pgx.Connect(ctx, f.pg.DSN)
		if err != nil {
			t.Errorf("writer: %v", err)
			return
		}
		defer wc.Close(context.Background())
		for i := 3001; i <= total; i += 50 {
			if _, err := wc.Exec(ctx, insertSQL("socotra_events", i, i+49)); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()

	rng := rand.New(rand.NewPCG(1, 2))
	var checkpoint source.Position
	got := map[string]int{}
	phases := map[string]int{}
	for stop := 0; stop < 10; stop++ {
		src, err := New(f.cfg, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Open(ctx, checkpoint); err != nil {
			t.Fatalf("stop %d: Open(%q): %v", stop, checkpoint, err)
		}
		for n := 1 + rng.IntN(4); n > 0; n-- {
			b, err := src.Read(ctx, 500+rng.IntN(2500))
			if err != nil {
				t.Fatalf("stop %d: Read: %v", stop, err)
			}
			for _, ev := range b.Events {
				got[ev.Locator]++
			}
			checkpoint = b.Position // "written and saved"
			if err := src.Ack(ctx, checkpoint); err != nil {
				t.Fatal(err)
			}
		}
		phases[strings.SplitN(string(checkpoint), ":", 2)[0]]++
		if err := src.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	src := f.open(t, f.cfg, checkpoint)
	c := collected{count: got, events: map[string]source.Event{}}
	readUntil(t, src, 1000, time.Minute, &c, hasN(total))
	for i := 1; i <= total; i++ {
		if got[fmt.Sprintf("ev-%09d", i)] == 0 {
			t.Fatalf("event %d missing", i)
		}
	}
	if len(got) != total {
		t.Errorf("distinct events: got %d, want %d", len(got), total)
	}
	if phases["snapshot"] == 0 || phases["lsn"] == 0 {
		t.Errorf("stops by phase %v: want stops both during the copy and while streaming", phases)
	}
}

// TestUpdatesDeletesToast: an update is a new version of the event with a
// higher Seq; deletes are counted and ignored; an update that leaves a
// TOASTed data value unchanged is, under the default replica identity,
// delivered as a reject (the server did not send the value) and counted.
func TestUpdatesDeletesToast(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.Snapshot = false
	src := f.open(t, cfg, "")
	exec(t, f.pg.Conn, insertSQL("socotra_events", 1, 10))
	exec(t, f.pg.Conn, `UPDATE socotra_events SET data = '{"updated": true}', type = 'policy.update' WHERE locator IN ('ev-000000001', 'ev-000000002')`)
	exec(t, f.pg.Conn, `DELETE FROM socotra_events WHERE locator IN ('ev-000000009', 'ev-000000010')`)
	big := `{"pad": "` + strings.Repeat("abcdefghij", 1000) + `"}` // compressible but out of line: TOASTed
	exec(t, f.pg.Conn, `INSERT INTO socotra_events (locator, tenant, flavor, type, occurred_at, data)
		VALUES ('big', 't', 'suite', 'x', now(), $1::json)`, big)
	exec(t, f.pg.Conn, `ALTER TABLE socotra_events ALTER COLUMN data SET STORAGE EXTERNAL`)
	exec(t, f.pg.Conn, `INSERT INTO socotra_events (locator, tenant, flavor, type, occurred_at, data)
		VALUES ('big2', 't', 'suite', 'x', now(), $1::json)`, big)
	exec(t, f.pg.Conn, `UPDATE socotra_events SET type = 'y' WHERE locator = 'big2'`)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 11, 11))

	var all []source.Event
	deadline := time.Now().Add(30 * time.Second)
	for len(all) < 16 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Until(deadline))
		b, err := read(ctx, t, src, 100, nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b.Events...)
	}
	if len(all) != 16 {
		t.Fatalf("events: got %d, want 16 (10 inserts, 2 updates, 2 big inserts, 1 rejected update, 1 insert)", len(all))
	}
	byLoc := map[string][]source.Event{}
	for _, ev := range all {
		byLoc[ev.Locator] = append(byLoc[ev.Locator], ev)
	}
	v := byLoc["ev-000000001"]
	if len(v) != 2 || v[1].Type != "policy.update" || string(v[1].Data) != `{"updated": true}` || v[1].Seq <= v[0].Seq {
		t.Errorf("updated event: got %+v", v)
	}
	if g := byLoc["big"]; len(g) != 1 || string(g[0].Data) != big {
		t.Errorf("big event: %d versions, data intact %v", len(g), len(g) == 1 && string(g[0].Data) == big)
	}
	st := src.Stats()
	if g := byLoc["big2"]; len(g) != 2 || g[0].Reject != "" || !strings.Contains(g[1].Reject, "unchanged TOASTed") ||
		!strings.Contains(string(g[1].Data), `"type":"y"`) || strings.Contains(string(g[1].Data), `"data"`) || g[1].Seq <= g[0].Seq {
		t.Errorf("big2: want the insert, then the update as a reject with its raw values but no data; got %+v", g)
	}
	if st.Deletes != 2 || st.UnchangedToast != 1 || st.Rejects != 1 {
		t.Errorf("deletes %d (want 2), unchanged TOAST %d (want 1), rejects %d (want 1)", st.Deletes, st.UnchangedToast, st.Rejects)
	}
}

// TestCopyInterrupted: when the copy's connection is cut, Read returns a
// transient error saying where the copy resumes, and the next Read copies
// again after the last row returned, under a fresh snapshot: every row
// arrives exactly once.
func TestCopyInterrupted(t *testing.T) {
	f := newFixture(t)
	ctx := testenv.Context(t, time.Minute)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 1, 30000))
	src := f.open(t, f.cfg, "")
	c := collected{count: map[string]int{}, events: map[string]source.Event{}}
	b, err := src.Read(ctx, 1000)
	if err != nil || len(b.Events) != 1000 {
		t.Fatalf("first Read: %d events, %v", len(b.Events), err)
	}
	for _, ev := range b.Events {
		c.count[ev.Locator]++
	}
	var n int
	if err := f.pg.Conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'tributary' AND query LIKE 'SELECT %ORDER BY%'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminate the copy's backend: %d terminated, %v", n, err)
	}
	for err == nil {
		b, err = src.Read(ctx, 1000)
		for _, ev := range b.Events {
			c.count[ev.Locator]++
		}
	}
	if fault.IsPermanent(err) || !strings.Contains(err.Error(), "snapshot copy") || !strings.Contains(err.Error(), "copying again after locator") {
		t.Fatalf("Read after the copy's connection was cut: %v; want a transient error saying where the copy resumes", err)
	}
	t.Logf("Read: %v", err)
	readUntil(t, src, 1000, 30*time.Second, &c, hasN(30000))
	readFor(t, src, 300*time.Millisecond, &c)
	wantExactly(t, &c, 1, 30000)
}

// TestRejects: rows that cannot be read as events (invalid JSON in a text
// data column, a NULL time, locator or type) are delivered as rejects with
// their raw values, never skipped: from the copy, from the stream and from a
// large streamed transaction replayed from disk alike; the rows beside them
// arrive as events.
func TestRejects(t *testing.T) {
	f := newFixture(t)
	exec(t, f.pg.Conn, `CREATE TABLE loose (locator text, request_id text, user_locator text, username text,
		transaction_id text, tenant text, flavor text, type text, occurred_at timestamptz, data text)`)
	exec(t, f.pg.Conn, `ALTER TABLE loose REPLICA IDENTITY FULL`)
	ins := func(locator, typ, at, data any) {
		exec(t, f.pg.Conn, `INSERT INTO loose (locator, tenant, flavor, type, occurred_at, data) VALUES ($1, 't', 'suite', $2, $3, $4)`, locator, typ, at, data)
	}
	ins("copy-ok", "x", "2024-01-01T00:00:00Z", `{"ok": true}`)
	ins("copy-bad-json", "x", "2024-01-01T00:00:00Z", `{bad`)
	ins("copy-null-time", "x", nil, `{}`)
	cfg := f.cfg
	cfg.Table = "loose"
	cfg.DecodingWorkMem = "64kB"
	cfg.SpillDir = t.TempDir()
	src := f.open(t, cfg, "")
	ins("stream-ok", "x", "2024-01-01T00:00:00Z", `{}`)
	ins(nil, "x", "2024-01-01T00:00:00Z", `{"no": "locator"}`)
	ins("stream-null-type", nil, "2024-01-01T00:00:00Z", `{}`)
	exec(t, f.pg.Conn, `INSERT INTO loose (locator, tenant, flavor, type, occurred_at, data)
		SELECT 'big-' || i, 't', 'suite', 'x', now(), CASE WHEN i = 1500 THEN '[1,' ELSE '{"pad": "' || repeat('p', 100) || '"}' END
		FROM generate_series(1, 3000) AS i`)

	var all []source.Event
	ctx := testenv.Context(t, time.Minute)
	for len(all) < 3006 {
		b, err := src.Read(ctx, 1000)
		if err != nil {
			t.Fatalf("Read after %d events: %v", len(all), err)
		}
		all = append(all, b.Events...)
	}
	rejects := map[string]source.Event{}
	for _, ev := range all {
		if ev.Reject != "" {
			key := ev.Locator
			if key == "" {
				key = "(null)"
			}
			rejects[key] = ev
		}
	}
	want := map[string]struct{ reason, raw string }{
		"copy-bad-json":    {"data column data is not valid JSON", `"data":"{bad"`},
		"copy-null-time":   {"time column occurred_at is NULL", `"occurred_at":null`},
		"(null)":           {"locator column locator is NULL", `{"locator":null,`},
		"stream-null-type": {"type column type is NULL", `"type":null`},
		"big-1500":         {"data column data is not valid JSON", `"data":"[1,"`},
	}
	for key, w := range want {
		ev, ok := rejects[key]
		if !ok {
			t.Errorf("%s: no reject delivered", key)
			continue
		}
		if !strings.Contains(ev.Reject, w.reason) || !strings.Contains(string(ev.Data), w.raw) || ev.Flavor != source.FlavorPostgres || ev.Seq == 0 {
			t.Errorf("%s: reject %q, data %s, flavor %q, seq %d; want %q and %s", key, ev.Reject, ev.Data, ev.Flavor, ev.Seq, w.reason, w.raw)
		}
	}
	if len(rejects) != len(want) {
		t.Errorf("rejects: got %d, want %d", len(rejects), len(want))
	}
	if got := src.Stats().Rejects; got != uint64(len(want)) {
		t.Errorf("Stats().Rejects: got %d, want %d", got, len(want))
	}
	if n := len(all) - len(rejects); n != 3006-len(want) {
		t.Errorf("events: got %d, want %d", n, 3006-len(want))
	}
}
