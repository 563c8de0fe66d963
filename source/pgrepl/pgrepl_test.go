package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// TestSnapshotStreamBoundary copies pre-existing rows under the slot's
// exported snapshot while a writer keeps inserting, then streams: every row
// arrives exactly once, snapshot rows sort before streamed ones.
func TestSnapshotStreamBoundary(t *testing.T) {
	f := newFixture(t)
	ctx := testenv.Context(t, 2*time.Minute)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 1, 2000))

	// A writer inserts one row per transaction across the slot's creation.
	wc, err := pgx.Connect(ctx, f.pg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close(context.Background())
	var next atomic.Int64
	next.Store(2001)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			i := int(next.Load())
			if _, err := wc.Exec(ctx, insertSQL("socotra_events", i, i)); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			next.Add(1)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	src := f.open(t, f.cfg, "")
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	last := int(next.Load()) - 1
	if last < 2100 {
		t.Logf("writer inserted only %d rows concurrently", last-2000)
	}
	var c collected
	readUntil(t, src, 500, time.Minute, &c, hasN(last))
	// Nothing more may follow (a double would show as a second delivery).
	readFor(t, src, 500*time.Millisecond, &c)
	wantExactly(t, &c, 1, last)
	st := src.Stats()
	if st.SnapshotRows < 2000 || st.Phase != "streaming" {
		t.Errorf("stats: snapshot rows %d (want ≥ 2000), phase %q", st.SnapshotRows, st.Phase)
	}
	streamed := 0
	var maxSnap, minStream uint64 = 0, ^uint64(0)
	slotLSN := uint64(src.streamAt)
	for _, ev := range c.events {
		if ev.Seq < slotLSN {
			maxSnap = max(maxSnap, ev.Seq)
		} else {
			streamed++
			minStream = min(minStream, ev.Seq)
		}
	}
	if uint64(st.SnapshotRows)+uint64(streamed) != uint64(last) {
		t.Errorf("snapshot rows %d + streamed %d != %d", st.SnapshotRows, streamed, last)
	}
	if streamed > 0 && maxSnap >= minStream {
		t.Errorf("snapshot Seq %d does not sort before streamed Seq %d", maxSnap, minStream)
	}
	ev := c.events["ev-000000007"]
	if ev.Type != "policy.issue" || ev.Tenant != "tenant-1" || ev.Flavor != "suite" || ev.RequestID != "req-7" ||
		string(ev.Data) != `{"i": 7, "policyLocator": "P7"}` || !ev.Timestamp.Equal(time.Date(2024, 1, 1, 0, 0, 0, 7e6, time.UTC)) {
		t.Errorf("event 7 mapped as %+v", ev)
	}
}

// readFor keeps reading for d and adds what arrives to c.
func readFor(t testing.TB, src *Source, d time.Duration, c *collected) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		ctx, cancel := context.WithDeadline(context.Background(), end)
		b, err := read(ctx, t, src, 1000, c)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t.Fatalf("Read: %v", err)
		}
		for _, ev := range b.Events {
			c.count[ev.Locator]++
			c.events[ev.Locator] = ev
		}
		c.last = b.Position
	}
}

// TestResume stops the source in the middle of the snapshot and again while
// streaming, reopens it at the last position, and still gets every row.
func TestResume(t *testing.T) {
	f := newFixture(t)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 1, 1000))
	src := f.open(t, f.cfg, "")
	var c collected
	readUntil(t, src, 300, 30*time.Second, &c, hasN(300))
	if !strings.HasPrefix(string(c.last), "snapshot:") {
		t.Fatalf("position after 300 of 1000 rows: got %q, want snapshot:…", c.last)
	}
	_ = src.Close(context.Background())
	exec(t, f.pg.Conn, insertSQL("socotra_events", 1001, 1500)) // committed after the slot: must come from the slot

	src = f.open(t, f.cfg, c.last)
	readUntil(t, src, 300, 30*time.Second, &c, func(c *collected) bool {
		return len(c.count) >= 1500 && strings.HasPrefix(string(c.last), "lsn:")
	})
	if !strings.HasPrefix(string(c.last), "lsn:") {
		t.Fatalf("position after the snapshot: got %q, want lsn:…", c.last)
	}
	// Rows after 300 may come twice (the fresh snapshot sees 1001..1500 too);
	// none may be missing, and the first 300 are not copied again.
	for i := 1; i <= 1500; i++ {
		if c.count[fmt.Sprintf("ev-%09d", i)] == 0 {
			t.Fatalf("event %d missing after resuming the snapshot", i)
		}
	}
	// Rows 1001..1500, committed after the slot's creation, come again from
	// the slot (the fresh snapshot saw them too): harmless, the sink is idempotent.
	readUntil(t, src, 300, 30*time.Second, &c, func(c *collected) bool {
		for i := 1001; i <= 1500; i++ {
			if c.count[fmt.Sprintf("ev-%09d", i)] < 2 {
				return false
			}
		}
		return true
	})
	if err := src.Ack(context.Background(), c.last); err != nil {
		t.Fatal(err)
	}
	_ = src.Close(context.Background())

	exec(t, f.pg.Conn, insertSQL("socotra_events", 1501, 2000))
	src = f.open(t, f.cfg, c.last)
	var c2 collected
	readUntil(t, src, 100, 30*time.Second, &c2, hasN(500))
	readFor(t, src, 300*time.Millisecond, &c2)
	wantExactly(t, &c2, 1501, 2000)
}

// TestAckAndIdleSlotAdvance: the flushed LSN reported to the server never
// passes what was Acked, and 1,000 writes to an unpublished table still move
// the slot once the reported position is Acked.
func TestAckAndIdleSlotAdvance(t *testing.T) {
	f := newFixture(t)
	exec(t, f.pg.Conn, "CREATE TABLE other (id int PRIMARY KEY, v text)")
	cfg := f.cfg
	cfg.Snapshot = false
	src := f.open(t, cfg, "")
	start := slotConfirmed(t, f.pg.Conn, cfg.Slot)

	exec(t, f.pg.Conn, insertSQL("socotra_events", 1, 100))
	var c collected
	readUntil(t, src, 1000, 30*time.Second, &c, hasN(100))
	time.Sleep(3 * cfg.StatusInterval)
	if got := slotConfirmed(t, f.pg.Conn, cfg.Slot); got != start {
		t.Fatalf("confirmed_flush_lsn moved to %s before any Ack (start %s)", got, start)
	}
	if err := src.Ack(context.Background(), c.last); err != nil {
		t.Fatal(err)
	}
	acked := lsnOf(t, c.last)
	waitConfirmed(t, f, cfg.Slot, acked)

	// 1,000 writes to a table outside the publication.
	for i := 0; i < 1000; i++ {
		exec(t, f.pg.Conn, "INSERT INTO other VALUES ($1, 'x')", i)
	}
	var idle collected
	readUntil(t, src, 1000, 30*time.Second, &idle, func(c *collected) bool { return c.last != "" && lsnOf(t, c.last) > acked })
	if len(idle.count) != 0 {
		t.Fatalf("unpublished writes produced %d events", len(idle.count))
	}
	if err := src.Ack(context.Background(), idle.last); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, f, cfg.Slot, lsnOf(t, idle.last))
	if got := slotConfirmed(t, f.pg.Conn, cfg.Slot); got > lsnOf(t, idle.last) {
		t.Errorf("confirmed_flush_lsn %s beyond the Acked %s", got, idle.last)
	}
	st := src.Stats()
	if st.AckedLSN != lsnOf(t, idle.last) || st.Events != 100 {
		t.Errorf("stats: acked %s events %d; want %s and 100", st.AckedLSN, st.Events, idle.last)
	}
	deadline := time.Now().Add(5 * time.Second)
	for src.Stats().SlotLagBytes < 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := src.Stats(); st.SlotLagBytes < 0 || st.ConfirmedLSN == 0 {
		t.Errorf("slot lag not sampled: %+v", st)
	}
}

// waitConfirmed waits until the slot's confirmed_flush_lsn reaches want.
func waitConfirmed(t testing.TB, f *fixture, slot string, want interface{ String() string }) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := slotConfirmed(t, f.pg.Conn, slot)
		if got.String() == want.String() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("confirmed_flush_lsn is %s, want %s", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKeepAliveWhileStalled: with wal_sender_timeout at 5s (set through the
// DSN, as an operator might) and a status interval of 1s, a reader that stops
// calling Read for 15 s while rows keep coming (the pipeline stalled on
// ClickHouse) keeps its replication connection: the same walsender serves it
// before and after, no session is restarted, and every row arrives once.
func TestKeepAliveWhileStalled(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.Snapshot = false
	cfg.DSN = withOptions(t, f.pg.DSN, "-c wal_sender_timeout=5s")
	cfg.StatusInterval = time.Second
	src := f.open(t, cfg, "")
	ctx := testenv.Context(t, 2*time.Minute)

	exec(t, f.pg.Conn, insertSQL("socotra_events", 1, 100))
	var c collected
	readUntil(t, src, 1000, 30*time.Second, &c, hasN(100))
	if err := src.Ack(ctx, c.last); err != nil {
		t.Fatal(err)
	}
	pid := walsenderPID(t, f, cfg.Slot)

	// The stall: rows keep coming (more than the hand-over holds, so the
	// streamer blocks on Read), nobody reads for 15 s.
	const total = 20100
	stalled := time.Now()
	for i := 101; i <= total; i += 1000 {
		exec(t, f.pg.Conn, insertSQL("socotra_events", i, min(i+999, total)))
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(15*time.Second - time.Since(stalled))
	if got := walsenderPID(t, f, cfg.Slot); got != pid {
		t.Errorf("walsender pid changed from %d to %d during the stall: the server ended the connection", pid, got)
	}

	readUntil(t, src, 1000, time.Minute, &c, hasN(total))
	readFor(t, src, 300*time.Millisecond, &c)
	wantExactly(t, &c, 1, total)
	if got := walsenderPID(t, f, cfg.Slot); got != pid {
		t.Errorf("walsender pid changed from %d to %d", pid, got)
	}
	if st := src.Stats(); st.Reconnects != 0 || c.transient != 0 {
		t.Errorf("reconnects %d, transient Read errors %d; want none", st.Reconnects, c.transient)
	}
	// And the Acks of the stall's rows still reach the server.
	if err := src.Ack(ctx, c.last); err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, f, cfg.Slot, lsnOf(t, c.last))
}

// TestStatusIntervalRefused: Open refuses a status interval longer than half
// of the wal_sender_timeout its replication connection sees, naming both
// values and the fix, and creates nothing; half exactly is accepted.
func TestStatusIntervalRefused(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.DSN = withOptions(t, f.pg.DSN, "-c wal_sender_timeout=5s")
	cfg.StatusInterval = 3 * time.Second
	src, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = src.Open(testenv.Context(t, 30*time.Second), "")
	if err == nil {
		_ = src.Close(context.Background())
		t.Fatal("Open accepted a 3s status interval with wal_sender_timeout 5s")
	}
	for _, w := range []string{"--pg.status-interval 3s", "wal_sender_timeout 5s", "at most 2.5s"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if !fault.IsPermanent(err) {
		t.Errorf("error %q is not permanent", err)
	}
	var slots int
	if err := f.pg.Conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", cfg.Slot).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("slots created by the refused Open: %d (%v)", slots, err)
	}
	cfg.StatusInterval = 2500 * time.Millisecond
	f.open(t, cfg, "")
}

// withOptions adds PostgreSQL's options parameter to a URL DSN.
func withOptions(t testing.TB, dsn, options string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("options", options)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads + literally
	return u.String()
}

// walsenderPID is the pid of the walsender holding slot, as
// pg_stat_replication lists it; 0 when none holds it.
func walsenderPID(t testing.TB, f *fixture, slot string) int {
	t.Helper()
	var pid int
	err := f.pg.Conn.QueryRow(testenv.Context(t, 10*time.Second), `SELECT r.pid FROM pg_replication_slots s
		JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1`, slot).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatalf("walsender of slot %s: %v", slot, err)
	}
	return pid
}

// TestDroppedPublication: a publication dropped under a running source ends
// replication with a permanent error that says how to recover; the
// documented recovery (drop the slot as checkpoint reset --resnapshot does,
// then start without a checkpoint) creates the publication and the slot
// again and copies the table: every row is there.
func TestDroppedPublication(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.Snapshot = false
	src := f.open(t, cfg, "")
	ctx := testenv.Context(t, time.Minute)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 1, 100))
	var c collected
	readUntil(t, src, 1000, 30*time.Second, &c, hasN(100))

	exec(t, f.pg.Conn, "DROP PUBLICATION "+cfg.Publication)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 101, 200))
	var err error
	for err == nil {
		var b source.Batch
		b, err = read(ctx, t, src, 1000, &c)
		for _, ev := range b.Events {
			c.count[ev.Locator]++
		}
	}
	if !fault.IsPermanent(err) {
		t.Fatalf("Read after the publication was dropped: %v; want a permanent error", err)
	}
	t.Logf("Read: %v", err)
	for _, w := range []string{cfg.Publication, "tributary checkpoint reset --pipeline NAME --resnapshot", "copies the table"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if _, again := src.Read(ctx, 1000); again == nil || again.Error() != err.Error() {
		t.Errorf("the next Read: %v; want the same error", again)
	}
	_ = src.Close(ctx)

	// The recovery.
	done, err := DropReplication(ctx, cfg)
	if err != nil {
		t.Fatalf("DropReplication: %v", err)
	}
	t.Logf("DropReplication: %v", done)
	cfg.Snapshot = true
	src = f.open(t, cfg, "")
	exec(t, f.pg.Conn, insertSQL("socotra_events", 201, 300))
	var after collected
	readUntil(t, src, 1000, 30*time.Second, &after, hasN(300))
	readFor(t, src, 300*time.Millisecond, &after)
	wantExactly(t, &after, 1, 300)
}

// TestStreamedTransactions: with logical_decoding_work_mem at 64kB the server
// streams large transactions before they commit; an aborted one and a rolled
// back savepoint never show, a committed 20,000-row one arrives whole.
func TestStreamedTransactions(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.Snapshot = false
	cfg.DecodingWorkMem = "64kB"
	cfg.SpillDir = t.TempDir()
	src := f.open(t, cfg, "")
	ctx := testenv.Context(t, 2*time.Minute)

	tx, err := f.pg.Conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, insertSQL("socotra_events", 100001, 105000)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	exec(t, f.pg.Conn, `BEGIN`)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 1, 3000))
	exec(t, f.pg.Conn, `SAVEPOINT s`)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 200001, 203000))
	exec(t, f.pg.Conn, `ROLLBACK TO SAVEPOINT s`)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 3001, 6000))
	exec(t, f.pg.Conn, `COMMIT`)
	exec(t, f.pg.Conn, insertSQL("socotra_events", 6001, 26000))

	var c collected
	readUntil(t, src, 5000, time.Minute, &c, hasN(26000))
	readFor(t, src, 500*time.Millisecond, &c)
	wantExactly(t, &c, 1, 26000)
	st := src.Stats()
	if st.Aborted < 2 {
		t.Errorf("aborted streams: got %d, want ≥ 2 (a rolled back transaction and a savepoint): was the transaction streamed?", st.Aborted)
	}
	seqs := map[uint64]int{}
	for _, ev := range c.events {
		seqs[ev.Seq]++
	}
	if len(seqs) != 2 {
		t.Errorf("distinct commit Seqs: got %d, want 2 (two transactions)", len(seqs))
	}
	left, _ := filepathGlob(cfg.SpillDir)
	if len(left) != 0 {
		t.Errorf("spill files left behind: %v", left)
	}
}

// TestCaughtUpIsSignalled: once the stream has delivered everything the
// server has, Read returns an empty batch promptly (the pipeline writes a
// backlog's tail on it instead of waiting for --pipeline.batch-age), and does
// so again after each later burst.
func TestCaughtUpIsSignalled(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.Snapshot = false
	cfg.StatusInterval = 30 * time.Second // no status traffic that could wake the walsender (half of the default wal_sender_timeout)
	src := f.open(t, cfg, "")
	var c collected
	for round, last := 0, 0; round < 3; round++ {
		first := last + 1
		last += 1000 * (round + 1)
		for i := first; i <= last; i += 500 {
			exec(t, f.pg.Conn, insertSQL("socotra_events", i, min(i+499, last)))
		}
		readUntil(t, src, 1_000_000, 30*time.Second, &c, hasN(last))
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := src.Read(ctx, 1_000_000)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Read after the last event: %v (want an empty batch: caught up)", round, err)
		}
		if len(b.Events) != 0 || lsnOf(t, b.Position) < lsnOf(t, c.last) {
			t.Fatalf("round %d: after the last event Read gave %d events at %s (before: %s); want none", round, len(b.Events), b.Position, c.last)
		}
		if took := time.Since(t0); took > 3*time.Second {
			t.Errorf("round %d: caught-up batch after %s, want it within a few milliseconds (at most 3 s)", round, took)
		}
		c.last = b.Position
		wantExactly(t, &c, 1, last)
	}
}
