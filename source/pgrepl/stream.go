package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tributary-cdc/tributary/source"
)

// relInfo maps a relation's columns to event fields.
type relInfo struct {
	ours  bool           // the configured table
	idx   [numFields]int // column index per field, -1 when not mapped
	field []int          // field per column index, -1 when not mapped
	name  string         // schema.table, for messages
	rel   *pglogrepl.RelationMessage
}

// streamer owns the replication connection: it receives and decodes pgoutput,
// hands events to Read in chunks, and sends standby status updates, also
// while Read is not consuming.
type streamer struct {
	s *Source

	resume   pglogrepl.LSN // where a new session starts: the end of the last complete transaction, or an idle position
	received pglogrepl.LSN // the highest WAL position received
	conn     *pgconn.PgConn
	v2       bool

	relations map[uint32]*relInfo
	newTuple  tuple // decodeChange's results, reused for every change
	oldTuple  tuple
	inTx      bool
	txSeq     uint64    // commit LSN of the open transaction
	txTime    time.Time // its commit time
	inStream  bool
	streamXid uint32
	spills    map[uint32]*spill

	pend          []source.Event // events not handed over yet
	lastChunk     int            // how many events the last hand-over held
	pendCommitted int            // how many of pend belong to complete transactions
	pendPos       pglogrepl.LSN  // the position after pend[:pendCommitted], 0 when none
	pendTime      time.Time

	// Telling Read that the stream caught up (see item.idle).
	idleOwed bool      // caught up: the next hand-over, or an item of its own, says so
	handed   bool      // events were handed over since Read was last told
	lastData time.Time // when the last XLogData arrived

	nextStatus time.Time
	pollAt     time.Time     // next check for a new Ack to report early
	sentFlush  pglogrepl.LSN // the flushed position last reported
	deadline   time.Time
	timer      *time.Timer
}

func newStreamer(s *Source, start pglogrepl.LSN) *streamer {
	return &streamer{s: s, resume: start, spills: map[uint32]*spill{}}
}

// ackPoll is how often the streaming goroutine looks for a new Ack to report.
const ackPoll = 100 * time.Millisecond

// quietIdle is how long the stream must be silent, with nothing in progress,
// for Read to be told it caught up when no keepalive said so.
const quietIdle = 50 * time.Millisecond

// connect opens a replication connection and starts streaming at
// st.resume: one attempt. Read calls it while no session runs.
func (st *streamer) connect(ctx context.Context) (*pgconn.PgConn, error) {
	conn, err := st.s.connectReplication(ctx)
	if err != nil {
		return nil, err
	}
	st.v2 = st.s.cfg.Stream && serverMajor(conn) >= 14
	args := []string{"proto_version '1'", fmt.Sprintf("publication_names '%s'", st.s.cfg.Publication)}
	if st.v2 {
		args = []string{"proto_version '2'", fmt.Sprintf("publication_names '%s'", st.s.cfg.Publication), "streaming 'on'"}
	}
	err = pglogrepl.StartReplication(ctx, conn, st.s.cfg.Slot, st.resume, pglogrepl.StartReplicationOptions{PluginArgs: args})
	if err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("start replication on slot %q: %w", st.s.cfg.Slot, err)
	}
	return conn, nil
}

// run streams on conn, a started session, until it fails or ctx ends. A
// failure is handed to Read after the complete transactions read before it
// (the events of the transaction it cut come again from the next session);
// then run returns, and Read starts the next session.
func (st *streamer) run(ctx context.Context, conn *pgconn.PgConn) {
	err := st.session(ctx, conn)
	st.dropSpills()
	st.count(func(s *Stats) { s.Connected = false })
	if ctx.Err() != nil {
		return
	}
	err = st.s.sessionError(err, false, st.resume)
	st.s.log.Info("replication session ended; Read returns why, and the next Read starts a new session", "resume", st.resume.String())
	st.pend = st.pend[:st.pendCommitted]
	if st.flushPend(ctx) != nil {
		return
	}
	_ = st.handOver(ctx, item{err: err})
}

// maybeStatus sends a status update when one is due: every StatusInterval,
// and within ackPoll of a new Ack, so that the slot (and a server shutdown
// waiting for it) moves promptly.
func (st *streamer) maybeStatus(now time.Time) error {
	if !now.Before(st.nextStatus) {
		return st.sendStatus(false)
	}
	if now.Before(st.pollAt) {
		return nil
	}
	st.pollAt = now.Add(ackPoll)
	st.s.mu.Lock()
	acked := st.s.acked
	st.s.mu.Unlock()
	if acked != st.sentFlush {
		return st.sendStatus(false)
	}
	return nil
}

// wakeAt is when maybeStatus has something to check next.
func (st *streamer) wakeAt() time.Time {
	if st.pollAt.Before(st.nextStatus) {
		return st.pollAt
	}
	return st.nextStatus
}

// handOver blocks until Read takes it, sending status updates meanwhile
// (also when Read takes it at once: a long run of hand-overs, such as the
// replay of a large streamed transaction, reads nothing from the server for
// a while, and the walsender must still hear from tributary).
func (st *streamer) handOver(ctx context.Context, it item) error {
	if st.conn != nil {
		if err := st.maybeStatus(time.Now()); err != nil {
			return err
		}
	}
	for {
		wait := time.Until(st.wakeAt())
		if st.conn == nil {
			wait = time.Hour
		}
		if st.timer == nil {
			st.timer = time.NewTimer(wait)
		} else {
			st.timer.Reset(wait)
		}
		select {
		case st.s.items <- it:
			st.timer.Stop()
			return nil
		case <-ctx.Done():
			st.timer.Stop()
			return ctx.Err()
		case <-st.timer.C:
			if err := st.maybeStatus(time.Now()); err != nil {
				return err
			}
		}
	}
}

// tryHandOver hands over the complete part of pend if Read is waiting.
func (st *streamer) tryHandOver() {
	if st.pendPos == 0 || len(st.s.items) > 0 {
		return
	}
	it := st.committedItem()
	select {
	case st.s.items <- it:
		st.dropCommitted(it)
	default:
	}
}

// committedItem is the complete part of pend, marked idle when the stream
// has caught up and nothing follows it.
func (st *streamer) committedItem() item {
	return item{
		events: st.pend[:st.pendCommitted:st.pendCommitted], pos: st.pendPos, commitTime: st.pendTime,
		idle: st.idleOwed && st.pendCommitted == len(st.pend),
	}
}

// tryIdle tells a waiting Read that the stream has caught up, when it owes
// that and has nothing pending (pending events carry it themselves).
func (st *streamer) tryIdle() {
	if !st.idleOwed || st.pendPos != 0 || len(st.pend) > 0 {
		return
	}
	select {
	case st.s.items <- item{idle: true}:
		st.idleOwed, st.handed = false, false
	default:
	}
}

// caughtUp reports whether nothing is in progress: no open transaction and
// no streamed one.
func (st *streamer) caughtUp() bool {
	return !st.inTx && !st.inStream && len(st.spills) == 0
}

// flushPend hands over everything pending, blocking: first the complete
// transactions with their position, then the open one's events without.
func (st *streamer) flushPend(ctx context.Context) error {
	if st.pendPos != 0 {
		it := st.committedItem()
		if err := st.handOver(ctx, it); err != nil {
			return err
		}
		st.dropCommitted(it)
	}
	if len(st.pend) > 0 {
		it := item{events: st.pend}
		if err := st.handOver(ctx, it); err != nil {
			return err
		}
		st.pend = nil
		st.handedOver(it)
	}
	return nil
}

// handedOver records what Read was given: the size of the next pending
// chunk, and whether Read still has to be told that the stream caught up.
func (st *streamer) handedOver(it item) {
	st.lastChunk = len(it.events)
	switch {
	case it.idle:
		st.idleOwed, st.handed = false, false
	case len(it.events) > 0:
		st.handed = true
	}
}

// dropCommitted removes it, the complete part of pend just handed over.
func (st *streamer) dropCommitted(it item) {
	st.handedOver(it)
	rest := st.pend[st.pendCommitted:]
	st.pend = nil
	if len(rest) > 0 {
		st.pend = append(make([]source.Event, 0, len(rest)+64), rest...)
	}
	st.pendCommitted, st.pendPos, st.pendTime = 0, 0, time.Time{}
}

// add queues one event of the open transaction.
func (st *streamer) add(ctx context.Context, ev source.Event) error {
	if st.pend == nil {
		// As large as the last hand-over: a backlog fills whole chunks
		// without growing, a trickle keeps small ones.
		st.pend = make([]source.Event, 0, min(chunkSize, max(64, st.lastChunk)))
	} else if len(st.pend) == cap(st.pend) && cap(st.pend) < chunkSize {
		// Outgrown: Read is behind (a backlog), so the chunk fills up;
		// grow it once to a whole chunk rather than doubling step by step.
		st.pend = slices.Grow(st.pend, chunkSize-len(st.pend))
	}
	st.pend = append(st.pend, ev)
	if len(st.pend) >= chunkSize {
		return st.flushPend(ctx)
	}
	return nil
}

// complete marks everything queued as complete up to pos.
func (st *streamer) complete(pos pglogrepl.LSN, at time.Time) {
	st.resume = pos
	st.pendCommitted, st.pendPos = len(st.pend), pos
	if !at.IsZero() {
		st.pendTime = at
	}
	st.tryHandOver()
}

// session streams on conn until it fails or ctx ends, and closes conn.
func (st *streamer) session(ctx context.Context, conn *pgconn.PgConn) error {
	defer conn.Close(context.Background())
	stop := context.AfterFunc(ctx, func() { _ = conn.Conn().Close() })
	defer stop()
	st.s.log.Info("replication started", "lsn", st.resume.String(), "protocol", map[bool]int{false: 1, true: 2}[st.v2])
	st.conn = conn
	defer func() { st.conn = nil }()
	// A new session starts after the last complete transaction: drop what
	// belongs to the one that was open, and every streamed one in progress.
	st.pend = st.pend[:st.pendCommitted]
	st.relations = map[uint32]*relInfo{}
	st.inTx, st.inStream = false, false
	st.idleOwed = false
	st.dropSpills()
	st.nextStatus = time.Now()
	st.deadline = time.Time{}

	for {
		now := time.Now()
		if err := st.maybeStatus(now); err != nil {
			return err
		}
		dl := st.wakeAt()
		switch {
		case st.pendPos != 0, st.idleOwed && len(st.s.items) < cap(st.s.items):
			// Read may be waiting for pend or the caught-up signal. (With
			// the hand-over queue full, Read is busy: the signal is retried
			// at the next regular wake-up instead of polling.)
			dl = now.Add(2 * time.Millisecond)
		case st.handed:
			// Wake when the stream has been quiet for quietIdle (see below).
			if quiet := st.lastData.Add(quietIdle); quiet.After(now) && quiet.Before(dl) {
				dl = quiet
			}
		}
		if !dl.Equal(st.deadline) {
			if err := conn.Conn().SetReadDeadline(dl); err != nil {
				return fmt.Errorf("set read deadline: %w", err)
			}
			st.deadline = dl
		}
		msg, err := conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if st.pendPos != 0 {
					if err := st.flushPend(ctx); err != nil {
						return err
					}
				}
				if st.handed && len(st.pend) == 0 && st.caughtUp() && !time.Now().Before(st.lastData.Add(quietIdle)) {
					st.idleOwed = true // quiet for a while: the server has nothing more
				}
				st.tryIdle()
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse keepalive: %w", err)
				}
				st.receivedUpTo(ka.ServerWALEnd)
				if st.caughtUp() && ka.ServerWALEnd >= st.resume {
					// The walsender sends a keepalive when it has sent all
					// the WAL there is: tell Read, so the end of a backlog
					// is written without waiting for the batch age.
					st.idleOwed = true
				}
				if !st.inTx && ka.ServerWALEnd > st.resume {
					// Nothing is open: everything before the server's end is
					// handed over or queued, so the idle slot may advance.
					st.complete(ka.ServerWALEnd, time.Time{})
				}
				st.tryIdle()
				if ka.ReplyRequested {
					if err := st.sendStatus(false); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parse XLogData: %w", err)
				}
				st.receivedUpTo(xld.WALStart)
				st.idleOwed, st.lastData = false, time.Now()
				if err := st.handle(ctx, xld.WALData); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(msg)
		case *pgproto3.CopyDone:
			return errors.New("the server ended the replication stream")
		}
	}
}

func (st *streamer) receivedUpTo(lsn pglogrepl.LSN) {
	if lsn > st.received {
		st.received = lsn
		st.s.mu.Lock()
		st.s.stats.ReceivedLSN = lsn
		st.s.mu.Unlock()
	}
}

// sendStatus reports the Acked position as flushed (never more) and what was
// received as written.
func (st *streamer) sendStatus(reply bool) error {
	st.nextStatus = time.Now().Add(st.s.cfg.StatusInterval)
	if st.conn == nil {
		return nil
	}
	st.s.mu.Lock()
	flushed := st.s.acked
	st.s.mu.Unlock()
	written := max(st.received, flushed)
	if flushed == 0 {
		written = 0 // pglogrepl reports written as flushed when flushed is 0
	}
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), st.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: written,
		WALFlushPosition: flushed,
		WALApplyPosition: flushed,
		ReplyRequested:   reply,
	})
	if err != nil {
		return fmt.Errorf("send standby status update: %w", err)
	}
	st.sentFlush = flushed
	st.s.mu.Lock()
	st.s.stats.FlushedLSN = flushed
	st.s.mu.Unlock()
	return nil
}

// handle decodes one pgoutput message.
func (st *streamer) handle(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	if data[0] == 'I' || data[0] == 'U' {
		return st.fastChange(ctx, string(data))
	}
	var msg pglogrepl.Message
	var err error
	if st.v2 {
		msg, err = pglogrepl.ParseV2(data, st.inStream)
	} else {
		msg, err = pglogrepl.Parse(data)
	}
	if err != nil {
		return fmt.Errorf("decode pgoutput message %q: %w", data[0], err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		st.relation(m)
	case *pglogrepl.RelationMessageV2:
		st.relation(&m.RelationMessage)
	case *pglogrepl.BeginMessage:
		st.inTx, st.txSeq, st.txTime = true, uint64(m.FinalLSN), m.CommitTime
	case *pglogrepl.CommitMessage:
		st.inTx = false
		st.complete(m.TransactionEndLSN, m.CommitTime)
	case *pglogrepl.DeleteMessage, *pglogrepl.DeleteMessageV2:
		st.count(func(s *Stats) { s.Deletes++ })
	case *pglogrepl.TruncateMessage, *pglogrepl.TruncateMessageV2:
		st.count(func(s *Stats) { s.Truncates++ })
		st.s.log.Warn("TRUNCATE of the events table ignored: its rows stay in ClickHouse")
	case *pglogrepl.StreamStartMessageV2:
		st.inStream, st.streamXid = true, m.Xid
	case *pglogrepl.StreamStopMessageV2:
		st.inStream = false
	case *pglogrepl.StreamCommitMessageV2:
		return st.streamCommit(ctx, m)
	case *pglogrepl.StreamAbortMessageV2:
		st.streamAbort(m)
	}
	return nil
}

func (st *streamer) count(f func(*Stats)) {
	st.s.mu.Lock()
	f(&st.s.stats)
	st.s.mu.Unlock()
}

func (st *streamer) relation(m *pglogrepl.RelationMessage) {
	ri := &relInfo{rel: m, name: m.Namespace + "." + m.RelationName}
	ri.ours = m.Namespace == st.s.schema && m.RelationName == st.s.table
	for i, f := range st.s.cfg.columnFields() {
		ri.idx[i] = -1
		if f.column == "" {
			continue
		}
		for j, c := range m.Columns {
			if c.Name == f.column {
				ri.idx[i] = j
				break
			}
		}
	}
	ri.field = make([]int, len(m.Columns))
	for j := range ri.field {
		ri.field[j] = -1
	}
	for i, j := range ri.idx {
		if j >= 0 {
			ri.field[j] = i
		}
	}
	st.relations[m.RelationID] = ri
}

// fastChange turns an inserted or updated row into an event (or a reject,
// see toEvent): queued at once in a plain transaction, spilled to disk inside
// a streamed one (the change's xid is its (sub)transaction).
func (st *streamer) fastChange(ctx context.Context, msg string) error {
	xid, t, old, _, err := st.decodeChange(msg)
	if err != nil {
		return fmt.Errorf("decode pgoutput %q message: %w", msg[0], err)
	}
	if t == nil {
		return nil
	}
	if t.toast != 0 && old != nil {
		// REPLICA IDENTITY FULL: the old tuple holds the values not sent.
		for i := range numFields {
			if bit := fieldSet(1) << i; t.toast&bit != 0 && old.toast&bit == 0 {
				t.v[i] = old.v[i]
				t.null = t.null&^bit | old.null&bit
				t.toast &^= bit
			}
		}
	}
	if st.inStream {
		sp := st.spills[st.streamXid]
		if sp == nil {
			if sp, err = newSpill(st.s.cfg.SpillDir); err != nil {
				return err
			}
			st.spills[st.streamXid] = sp
		}
		return sp.append(xid, t)
	}
	return st.add(ctx, st.s.toEvent(t, st.txSeq))
}

// streamCommit replays a committed streamed transaction from its spill file.
func (st *streamer) streamCommit(ctx context.Context, m *pglogrepl.StreamCommitMessageV2) error {
	sp := st.spills[m.Xid]
	delete(st.spills, m.Xid)
	if sp != nil {
		defer sp.remove()
		err := sp.replay(func(t *tuple) error {
			return st.add(ctx, st.s.toEvent(t, uint64(m.CommitLSN)))
		})
		if err != nil {
			return fmt.Errorf("streamed transaction %d: %w", m.Xid, err)
		}
	}
	st.complete(m.TransactionEndLSN, m.CommitTime)
	return nil
}

// streamAbort discards an aborted streamed transaction, or marks the changes
// of an aborted subtransaction to be skipped.
func (st *streamer) streamAbort(m *pglogrepl.StreamAbortMessageV2) {
	st.count(func(s *Stats) { s.Aborted++ })
	sp := st.spills[m.Xid]
	if sp == nil {
		return
	}
	if m.SubXid == m.Xid || m.SubXid == 0 {
		sp.remove()
		delete(st.spills, m.Xid)
		return
	}
	sp.abortSub(m.SubXid)
}

func (st *streamer) dropSpills() {
	for xid, sp := range st.spills {
		sp.remove()
		delete(st.spills, xid)
	}
}
