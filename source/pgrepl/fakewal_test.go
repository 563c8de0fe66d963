package pgrepl

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tributary-cdc/tributary/source"
)

// fakeWAL is the server side of the source's replication connections, over
// net.Pipe, for tests of the streamer's state machine under testing/synctest
// (fake time, no sleeps): each connection is a fakeSession the test drives by
// sending pgoutput messages and reading the status updates it gets back.
type fakeWAL struct {
	t        testing.TB
	sessions chan *fakeSession
	// startErr, when set, is the error the next START_REPLICATION gets
	// (SQLSTATE and message), instead of the stream.
	mu       sync.Mutex
	startErr []string
}

func newFakeWAL(t testing.TB) *fakeWAL {
	return &fakeWAL{t: t, sessions: make(chan *fakeSession, 16)}
}

// statusUpdate is a standby status update as the server received it.
type statusUpdate struct {
	at             time.Time
	write, flush   pglogrepl.LSN
	replyRequested bool
}

// fakeSession is one replication connection.
type fakeSession struct {
	start   pglogrepl.LSN // where START_REPLICATION asked to start
	out     chan []byte   // CopyData payloads to send; closing it ends the connection
	failed  chan []string // an ErrorResponse (code, message) to send, ending the stream
	mu      sync.Mutex
	status  []statusUpdate
	done    chan struct{} // closed when the client has gone
	conn    net.Conn
	endOnce sync.Once
}

// dial is Config.dial: every connection is served by a new session.
func (w *fakeWAL) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	client, server := net.Pipe()
	go w.serve(server)
	return client, nil
}

func (w *fakeWAL) failNextStart(code, msg string) {
	w.mu.Lock()
	w.startErr = []string{code, msg}
	w.mu.Unlock()
}

func (w *fakeWAL) serve(conn net.Conn) {
	defer conn.Close()
	be := pgproto3.NewBackend(conn, conn)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.4"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		q, ok := msg.(*pgproto3.Query)
		if !ok {
			return // Terminate
		}
		f := strings.Fields(q.String)
		if len(f) < 5 || f[0] != "START_REPLICATION" {
			w.t.Errorf("fake walsender: unexpected query %q", q.String)
			return
		}
		w.mu.Lock()
		startErr := w.startErr
		w.startErr = nil
		w.mu.Unlock()
		if startErr != nil {
			be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: startErr[0], Message: startErr[1]})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if be.Flush() != nil {
				return
			}
			continue
		}
		lsn, err := pglogrepl.ParseLSN(f[4])
		if err != nil {
			w.t.Errorf("fake walsender: %q: %v", q.String, err)
			return
		}
		be.Send(&pgproto3.CopyBothResponse{})
		if be.Flush() != nil {
			return
		}
		s := &fakeSession{start: lsn, out: make(chan []byte, 1<<16), failed: make(chan []string, 1), done: make(chan struct{}), conn: conn}
		w.sessions <- s
		s.run(be)
		return
	}
}

// run sends what the test queues and records the status updates.
func (s *fakeSession) run(be *pgproto3.Backend) {
	go func() {
		defer s.end()
		for {
			msg, err := be.Receive()
			if err != nil {
				return
			}
			cd, ok := msg.(*pgproto3.CopyData)
			if !ok || len(cd.Data) < 34 || cd.Data[0] != 'r' {
				continue
			}
			d := cd.Data
			s.mu.Lock()
			s.status = append(s.status, statusUpdate{at: time.Now(),
				write: pglogrepl.LSN(binary.BigEndian.Uint64(d[1:])), flush: pglogrepl.LSN(binary.BigEndian.Uint64(d[9:])),
				replyRequested: d[33] == 1})
			s.mu.Unlock()
		}
	}()
	for {
		select {
		case <-s.done:
			return
		case e := <-s.failed:
			be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: e[0], Message: e[1]})
			_ = be.Flush()
			s.end()
			return
		case data, ok := <-s.out:
			if !ok {
				s.end()
				return
			}
			be.Send(&pgproto3.CopyData{Data: data})
			if be.Flush() != nil {
				return
			}
		}
	}
}

func (s *fakeSession) end() {
	s.endOnce.Do(func() {
		close(s.done)
		s.conn.Close()
	})
}

// statuses returns the status updates received so far.
func (s *fakeSession) statuses() []statusUpdate {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]statusUpdate(nil), s.status...)
}

// send queues pgoutput messages as XLogData at lsn, or keepalives.
func (s *fakeSession) send(msgs ...[]byte) {
	for _, m := range msgs {
		s.out <- m
	}
}

// Message encoders, the server's side of what pglogrepl parses.

var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pgTime(t time.Time) uint64 { return uint64(t.Sub(pgEpoch).Microseconds()) }

func xlog(at pglogrepl.LSN, msg []byte) []byte {
	b := []byte{'w'}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.BigEndian.AppendUint64(b, pgTime(time.Now()))
	return append(b, msg...)
}

func keepalive(end pglogrepl.LSN, reply bool) []byte {
	b := []byte{'k'}
	b = binary.BigEndian.AppendUint64(b, uint64(end))
	b = binary.BigEndian.AppendUint64(b, pgTime(time.Now()))
	if reply {
		return append(b, 1)
	}
	return append(b, 0)
}

const fakeRelID = 16384

// eventColumns are the emulator's table's columns, in its order.
var eventColumns = []string{"locator", "request_id", "user_locator", "username", "transaction_id", "tenant", "flavor", "type", "occurred_at", "data"}

func relationMsg() []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, fakeRelID)
	b = append(b, "public\x00socotra_events\x00"...)
	b = append(b, 'd')
	b = binary.BigEndian.AppendUint16(b, uint16(len(eventColumns)))
	for i, c := range eventColumns {
		flags := byte(0)
		if i == 0 {
			flags = 1 // key
		}
		b = append(b, flags)
		b = append(b, c+"\x00"...)
		b = binary.BigEndian.AppendUint32(b, 25) // text
		b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
	}
	return b
}

func beginMsg(final pglogrepl.LSN, xid uint32) []byte {
	b := []byte{'B'}
	b = binary.BigEndian.AppendUint64(b, uint64(final))
	b = binary.BigEndian.AppendUint64(b, pgTime(time.Now()))
	return binary.BigEndian.AppendUint32(b, xid)
}

func commitMsg(commit, end pglogrepl.LSN) []byte {
	b := []byte{'C', 0}
	b = binary.BigEndian.AppendUint64(b, uint64(commit))
	b = binary.BigEndian.AppendUint64(b, uint64(end))
	return binary.BigEndian.AppendUint64(b, pgTime(time.Now()))
}

// insertMsg is the insert of event locator (its values in eventColumns order).
func insertMsg(locator string) []byte {
	vals := []string{locator, "", "", "", "", "t1", "suite", "policy.issue", "2024-01-01 00:00:00+00", `{"n": 1}`}
	b := []byte{'I'}
	b = binary.BigEndian.AppendUint32(b, fakeRelID)
	b = append(b, 'N')
	b = binary.BigEndian.AppendUint16(b, uint16(len(vals)))
	for _, v := range vals {
		b = append(b, 't')
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// txn is one committed transaction of n inserts named prefix-0..n-1, at
// LSNs from begin to end (the commit's end LSN): its XLogData messages.
func txn(prefix string, n int, xid uint32, begin pglogrepl.LSN) (msgs [][]byte, end pglogrepl.LSN) {
	at := begin
	end = begin + pglogrepl.LSN(n+2)*0x100
	msgs = append(msgs, xlog(at, beginMsg(end-0x10, xid)))
	for i := range n {
		at += 0x100
		msgs = append(msgs, xlog(at, insertMsg(fmt.Sprintf("%s-%d", prefix, i))))
	}
	msgs = append(msgs, xlog(end-0x10, commitMsg(end-0x10, end)))
	return msgs, end
}

// newFakeSource is a source in its streaming phase at start, as Open leaves
// it, whose connections go to w. Call it inside the synctest bubble; Close
// it before the bubble ends.
func newFakeSource(t testing.TB, w *fakeWAL, start pglogrepl.LSN) *Source {
	cfg := DefaultConfig()
	cfg.DSN = "postgres://tributary@127.0.0.1:5432/db?sslmode=disable"
	cfg.Stream = false
	cfg.StatusInterval = time.Second
	cfg.dial = w.dial
	s, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	s.dataIsJSON = true
	s.runCtx, s.cancel = context.WithCancel(context.Background())
	s.opened = true
	s.setStart(start, false)
	s.startStreaming()
	return s
}

// nextSession waits for the source's next replication session.
func (w *fakeWAL) nextSession(t testing.TB) *fakeSession {
	t.Helper()
	select {
	case s := <-w.sessions:
		return s
	case <-time.After(time.Minute):
		t.Fatal("no replication session started")
		return nil
	}
}

// readEvents reads until n events came (or an error), counting per locator.
func readEvents(t testing.TB, src *Source, n int, got map[string]int) (source.Position, error) {
	t.Helper()
	var last source.Position
	total := 0
	for total < n {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		b, err := src.Read(ctx, 100_000)
		cancel()
		if err != nil {
			return last, err
		}
		for _, ev := range b.Events {
			got[ev.Locator]++
		}
		total += len(b.Events)
		last = b.Position
	}
	return last, nil
}
