package pgrepl

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/source"
)

// The streamer's state machine against a fake walsender (fakewal_test.go),
// in a synctest bubble: time is fake, so the schedule of status updates and
// the caught-up signal are checked exactly, without sleeping.

// TestStreamerStatusWhileReadStalls: while Read does not consume and the
// streamer is blocked handing events over, a status update with the acked
// position still goes out every StatusInterval, a new Ack within ackPoll;
// afterwards every event arrives once.
func TestStreamerStatusWhileReadStalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWAL(t)
		src := newFakeSource(t, w, 0x1000)
		defer src.Close(context.Background())
		got := map[string]int{}

		// The first Read starts the session; a small transaction comes.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		firstRead := make(chan error, 1)
		go func() {
			_, err := readEvents(t, src, 10, got)
			firstRead <- err
		}()
		sess := w.nextSession(t)
		if sess.start != 0x1000 {
			t.Errorf("START_REPLICATION at %s, want 0/1000", sess.start)
		}
		sess.send(xlog(0x1000, relationMsg()))
		msgs, end1 := txn("a", 10, 1, 0x1000)
		sess.send(msgs...)
		if err := <-firstRead; err != nil {
			t.Fatal(err)
		}
		if err := src.Ack(ctx, lsnPos(end1)); err != nil {
			t.Fatal(err)
		}
		// Then far more than the hand-over holds: the streamer blocks.
		msgs, end2 := txn("b", 3*chunkSize, 2, end1)
		sess.send(msgs...)
		synctest.Wait()
		stalled := time.Now()
		time.Sleep(time.Minute)
		synctest.Wait() // what is due at this instant has happened

		st := sess.statuses()
		var during []statusUpdate
		for _, u := range st {
			if u.at.After(stalled) {
				during = append(during, u)
			}
		}
		if len(during) < 59 {
			t.Fatalf("%d status updates during a 60s stall, want one per second", len(during))
		}
		prev := stalled
		for _, u := range during {
			if gap := u.at.Sub(prev); gap > src.cfg.StatusInterval {
				t.Errorf("status updates %s apart during the stall (at %s), want at most %s", gap, u.at.Sub(stalled), src.cfg.StatusInterval)
			}
			if u.flush != end1 {
				t.Errorf("status during the stall reports flushed %s, want the acked %s", u.flush, end1)
			}
			prev = u.at
		}
		if src.Stats().FlushedLSN != end1 {
			t.Errorf("Stats().FlushedLSN %s, want %s", src.Stats().FlushedLSN, end1)
		}

		// An Ack during the stall reaches the server within ackPoll.
		msgs, end3 := txn("c", 1, 3, end2)
		sess.send(msgs...)
		acked := time.Now()
		if err := src.Ack(ctx, lsnPos(end2)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ackPoll)
		synctest.Wait()
		st = sess.statuses()
		if u := st[len(st)-1]; u.flush != end2 || u.at.Sub(acked) > ackPoll {
			t.Errorf("after an Ack at %s: last status at %s reports %s, want %s within %s", acked.Sub(stalled), u.at.Sub(stalled), u.flush, end2, ackPoll)
		}

		pos, err := readEvents(t, src, 3*chunkSize+1, got)
		if err != nil {
			t.Fatal(err)
		}
		if lsnOf(t, pos) != end3 {
			t.Errorf("position after everything: %s, want lsn:%s", pos, end3)
		}
		if len(got) != 10+3*chunkSize+1 {
			t.Errorf("distinct events: %d, want %d", len(got), 10+3*chunkSize+1)
		}
		for loc, n := range got {
			if n != 1 {
				t.Errorf("event %s delivered %d times", loc, n)
			}
		}
	})
}

// TestStreamerAnswersReplyRequest: a keepalive that asks for a reply is
// answered at once, long before the next regular status update; a keepalive
// at the server's end with nothing open moves the position of an idle stream
// and tells Read that the stream caught up (an empty batch).
func TestStreamerAnswersReplyRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWAL(t)
		src := newFakeSource(t, w, 0x1000)
		src.cfg.StatusInterval = time.Hour
		defer src.Close(context.Background())

		read := make(chan error, 1)
		var pos string
		go func() {
			b, err := src.Read(context.Background(), 100)
			pos = string(b.Position)
			if err == nil && len(b.Events) > 0 {
				err = fmt.Errorf("an idle stream gave %d events", len(b.Events))
			}
			read <- err
		}()
		sess := w.nextSession(t)
		synctest.Wait()
		before := len(sess.statuses())
		time.Sleep(time.Minute)
		synctest.Wait()
		asked := time.Now()
		sess.send(keepalive(0x5000, true))
		synctest.Wait()
		st := sess.statuses()
		if len(st) != before+1 || !st[len(st)-1].at.Equal(asked) {
			t.Fatalf("status updates: %d before the request, %d after; want one more, sent at once", before, len(st))
		}
		if err := <-read; err != nil {
			t.Fatal(err)
		}
		if pos != "lsn:0/5000" {
			t.Errorf("position after an idle keepalive: %s, want lsn:0/5000", pos)
		}
	})
}

// TestStreamerCaughtUpAfterQuiet: without a keepalive, Read is told the stream
// caught up (an empty batch) once the connection has been quiet for quietIdle
// with nothing open, and not while a transaction is open.
func TestStreamerCaughtUpAfterQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWAL(t)
		src := newFakeSource(t, w, 0x1000)
		defer src.Close(context.Background())
		got := map[string]int{}

		done := make(chan error, 1)
		go func() { _, err := readEvents(t, src, 5, got); done <- err }()
		sess := w.nextSession(t)
		sess.send(xlog(0x1000, relationMsg()))
		msgs, end := txn("a", 5, 1, 0x1000)
		sess.send(msgs...)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// A transaction begins and stays open: no caught-up signal.
		sess.send(xlog(end, beginMsg(end+0x1000, 2)), xlog(end+0x100, insertMsg("b-0")))
		synctest.Wait()
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		b, err := src.Read(ctx, 100)
		cancel()
		if err == nil {
			t.Fatalf("Read during an open transaction returned %d events at %s after %s; want it to wait", len(b.Events), b.Position, time.Since(t0))
		}
		// The commit; then quiet.
		sess.send(xlog(end+0x1000, commitMsg(end+0x1000, end+0x1010)))
		b, err = src.Read(context.Background(), 100)
		if err != nil || len(b.Events) != 1 {
			t.Fatalf("Read after the commit: %d events, %v", len(b.Events), err)
		}
		t0 = time.Now()
		b, err = src.Read(context.Background(), 100)
		if err != nil || len(b.Events) != 0 || lsnOf(t, b.Position) != end+0x1010 {
			t.Fatalf("Read after the last event: %d events at %s, %v; want an empty batch at %s", len(b.Events), b.Position, err, end+0x1010)
		}
		if took := time.Since(t0); took > quietIdle+10*time.Millisecond {
			t.Errorf("caught-up signal after %s of quiet, want about %s", took, quietIdle)
		}
	})
}

// TestStreamerSessionFailure: a lost connection is handed to Read after the
// complete transactions read before it, as a transient error that says where
// the next session resumes; the streamer does not reconnect by itself; the
// next Read starts one session there, and the cut transaction comes whole.
func TestStreamerSessionFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWAL(t)
		src := newFakeSource(t, w, 0x1000)
		defer src.Close(context.Background())
		got := map[string]int{}

		done := make(chan error, 1)
		go func() { _, err := readEvents(t, src, 5, got); done <- err }()
		sess := w.nextSession(t)
		sess.send(xlog(0x1000, relationMsg()))
		msgs, end := txn("a", 5, 1, 0x1000)
		sess.send(msgs...)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		msgs2, end2 := txn("b", 3, 2, end)
		sess.send(msgs2[:2]...) // the begin and one insert; then the connection drops
		synctest.Wait()
		close(sess.out)

		_, err := src.Read(context.Background(), 100)
		if err == nil || fault.IsPermanent(err) {
			t.Fatalf("Read after the connection dropped: %v; want a transient error", err)
		}
		want := "postgres replication connection lost (resuming at LSN " + pglogrepl.LSN(end).String() + " on the next attempt)"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case s := <-w.sessions:
			t.Fatalf("the source reconnected by itself (at %s)", s.start)
		default:
		}
		if st := src.Stats(); st.Connected || st.Reconnects != 0 {
			t.Errorf("stats after the failure: connected %v, reconnects %d", st.Connected, st.Reconnects)
		}

		// The next session refuses first (the slot still held), then starts.
		w.failNextStart("55006", `replication slot "s" is active for PID 42`)
		_, err = src.Read(context.Background(), 100)
		if err == nil || fault.IsPermanent(err) || !strings.Contains(err.Error(), "in use by another connection") {
			t.Fatalf("Read while the slot is held: %v; want a transient error saying so", err)
		}
		go func() { _, err := readEvents(t, src, 3, got); done <- err }()
		sess = w.nextSession(t)
		if sess.start != end {
			t.Errorf("the new session starts at %s, want %s", sess.start, end)
		}
		sess.send(xlog(end, relationMsg()))
		sess.send(msgs2...)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(got) != 8 {
			t.Errorf("distinct events %d, want 8", len(got))
		}
		for loc, n := range got {
			if n != 1 {
				t.Errorf("event %s delivered %d times", loc, n)
			}
		}
		if st := src.Stats(); !st.Connected || st.Reconnects != 1 {
			t.Errorf("stats after the new session: connected %v, reconnects %d; want true, 1", st.Connected, st.Reconnects)
		}
		_ = end2
	})
}

// TestStreamerDroppedPublication: the server's "publication does not exist"
// ends replication with a permanent error that names the recovery; every
// later Read returns it, and nothing reconnects.
func TestStreamerDroppedPublication(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWAL(t)
		src := newFakeSource(t, w, 0x1000)
		defer src.Close(context.Background())

		done := make(chan error, 1)
		go func() { _, err := src.Read(context.Background(), 100); done <- err }()
		sess := w.nextSession(t)
		sess.failed <- []string{"42704", fmt.Sprintf("publication %q does not exist", src.cfg.Publication)}
		err := <-done
		if !fault.IsPermanent(err) || !strings.Contains(err.Error(), "tributary checkpoint reset --pipeline NAME --resnapshot") {
			t.Fatalf("Read: %v; want a permanent error naming the recovery", err)
		}
		if _, again := src.Read(context.Background(), 100); again != err {
			t.Errorf("the next Read: %v; want the same error", again)
		}
		synctest.Wait()
		if len(w.sessions) != 0 {
			t.Error("the source reconnected after a permanent error")
		}
	})
}

// lsnPos is the position of a streamed LSN.
func lsnPos(l pglogrepl.LSN) source.Position { return position{lsn: l}.encode() }
