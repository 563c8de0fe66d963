package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/source"
)

var _ source.Source = (*Source)(nil)

// Stats is a snapshot of the source's counters, for metrics.
type Stats struct {
	Phase          string        // "", "snapshot" or "streaming"
	SlotLagBytes   int64         // pg_current_wal_lsn() - confirmed_flush_lsn of the slot, sampled; -1 before the first sample
	ConfirmedLSN   pglogrepl.LSN // the slot's confirmed_flush_lsn, sampled from the server
	AckedLSN       pglogrepl.LSN // the highest LSN Acked
	FlushedLSN     pglogrepl.LSN // the flushed LSN last reported to the server (at most AckedLSN)
	ReceivedLSN    pglogrepl.LSN // the highest WAL position received
	Events         uint64        // events returned by Read (snapshot and stream)
	SnapshotRows   uint64        // of which copied by the initial snapshot
	Deletes        uint64        // deletes seen and ignored
	Truncates      uint64        // truncates seen and ignored
	UnchangedToast uint64        // updates delivered as rejects because a column was an unchanged TOASTed value the server did not send (also in Rejects)
	Rejects        uint64        // rows delivered as rejects (Event.Reject set): they could not be read as events
	Aborted        uint64        // streamed transactions (or subtransactions) discarded after an abort
	Connected      bool          // a replication session is streaming
	Reconnects     uint64        // replication sessions started after the first (each after a failure handed to Read)
	LastCommit     time.Time     // commit time of the newest transaction returned by Read
}

// item is what the streaming goroutine hands to Read: events, and when pos is
// non-zero, the resumable position just after them. idle says the stream has
// caught up with the server after these events: Read returns what it has
// and then an empty batch, which tells the pipeline a backlog has ended.
type item struct {
	events     []source.Event
	pos        pglogrepl.LSN
	commitTime time.Time
	idle       bool
	err        error
}

// chunkSize is the most events the streaming goroutine hands over at once.
const chunkSize = 2048

// Source reads events from a PostgreSQL table through logical replication.
// Read is called from one goroutine; Ack and Stats may be called from any.
type Source struct {
	cfg           Config
	log           *slog.Logger
	schema, table string
	dataIsJSON    bool
	keyType       string

	// Read's state.
	snap      *snapshot     // non-nil while copying
	pos       position      // the position after the last batch returned
	items     chan item     // from the streaming goroutine
	cur       item          // the item being consumed
	curOff    int           // events of cur already returned
	curLive   bool          // cur holds an unconsumed item
	readErr   error         // an error to return on the next Read
	idleNext  bool          // the stream caught up after the last batch: the next Read returns an empty one at once
	fatal     error         // a permanent error: every Read returns it
	streamAt  pglogrepl.LSN // where streaming starts
	streaming bool          // past the copy
	recopy    bool          // the copy failed: the next Read starts it again after s.pos

	// The replication sessions. st lives from the end of the copy to Close;
	// a session is one connection, streamed by its own goroutine until it
	// fails (it then hands the error to Read, after the events read before
	// it, and ends) or Close.
	st          *streamer
	running     bool          // a session's goroutine runs (Read has not taken its error)
	sessionDone chan struct{} // closed when the last session's goroutine has ended
	sessions    uint64        // sessions started

	runCtx context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	opened bool

	mu    sync.Mutex
	acked pglogrepl.LSN
	stats Stats
}

// New checks cfg and returns a source; it connects nothing until Open.
func New(cfg Config, logger *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	schema, table, _ := splitTable(cfg.Table)
	s := &Source{
		cfg:    cfg,
		log:    logger.With("component", "pgrepl", "slot", cfg.Slot),
		schema: schema,
		table:  table,
		items:  make(chan item, 2),
	}
	s.stats.SlotLagBytes = -1
	return s, nil
}

// Open checks the database (wal_level, privileges, the table's key and
// columns, wal_sender_timeout against --pg.status-interval), ensures the
// publication and the slot, and prepares reading after from. With the empty
// position it copies the table's rows first when Config.Snapshot is set:
// under the new slot's exported snapshot when it creates the slot, under a
// fresh snapshot when the slot already exists (rows committed since then come
// again from the slot; the sink is idempotent). Open makes one attempt: a
// connection failure is transient, a refusal (configuration, privileges,
// wal_level, a missing slot or publication) permanent. Streaming starts at
// the first Read.
func (s *Source) Open(ctx context.Context, from source.Position) (err error) {
	if s.opened {
		return errors.New("pgrepl: Open called twice")
	}
	var p position
	if from != "" {
		if p, err = parsePosition(from); err != nil {
			return fault.Permanent(fmt.Errorf("the checkpoint's position cannot be read (%w): it was not written by this source, or was altered; %s", err, checkpointResetHint))
		}
	}
	conn, err := s.connectSQL(ctx)
	if err != nil {
		return classify(fmt.Errorf("postgres unreachable: %w", err))
	}
	keep := false
	defer func() {
		if !keep {
			conn.Close(context.Background())
		}
	}()
	notUsable := func(err error) error {
		if fault.IsPermanent(err) {
			return fmt.Errorf("PostgreSQL source not usable: %w", err)
		}
		return classify(fmt.Errorf("check the PostgreSQL source: %w", err))
	}
	info, err := s.preflight(ctx, conn)
	if err != nil {
		return notUsable(err)
	}
	s.dataIsJSON, s.keyType = info.dataIsJSON, info.keyType
	rc, err := s.connectReplication(ctx)
	if err != nil {
		return classify(err)
	}
	defer rc.Close(context.Background())
	if err := s.checkSenderTimeout(ctx, rc); err != nil {
		return notUsable(err)
	}
	if err := s.ensurePublication(ctx, conn); err != nil {
		return notUsable(err)
	}
	slot, err := s.lookupSlot(ctx, conn)
	if err != nil {
		return classify(err)
	}
	s.runCtx, s.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			s.cancel()
			if s.snap != nil {
				s.snap.close()
				s.snap = nil
				keep = true // closed with the copy
			}
		}
	}()

	switch {
	case from == "" || p.snapshot:
		if slot == nil {
			if !s.cfg.CreateSlot {
				return fault.Permanent(fmt.Errorf("replication slot %q does not exist and --pg.create-slot is false", s.cfg.Slot))
			}
			if from != "" {
				s.log.Warn("the slot of an interrupted snapshot is gone: creating it again and copying the table from the start", "position", string(from))
			}
			lsn, err := s.createSlot(ctx, conn, rc)
			if err != nil {
				return classify(err)
			}
			keep = s.snap != nil
			s.setStart(lsn, s.snap != nil)
			break
		}
		if from == "" && !s.cfg.Snapshot {
			s.setStart(slot.confirmed, false)
			break
		}
		start, after, hasKey := slot.confirmed, "", false
		if p.snapshot {
			start, after, hasKey = p.lsn, p.lastKey, p.hasKey
		}
		s.log.Info("copying the table under a fresh snapshot (the slot already exists); rows committed since the slot's position come again from the slot", "slot_lsn", start.String())
		if err := s.beginCopy(ctx, conn, "", start, after, hasKey); err != nil {
			return classify(err)
		}
		keep = true
		s.setStart(start, true)
	default:
		if slot == nil {
			return fault.Permanent(fmt.Errorf("replication slot %q does not exist but the checkpoint is at %s: changes after it may be lost; "+
				"recreate the slot by resetting the checkpoint (`tributary checkpoint reset --pipeline NAME`; a new snapshot is copied) or restore the slot", s.cfg.Slot, from))
		}
		if p.lsn < slot.confirmed {
			s.log.Warn("the checkpoint is behind the slot's confirmed position; the server resumes from the slot's", "position", string(from), "confirmed_flush_lsn", slot.confirmed.String())
		}
		s.setStart(p.lsn, false)
	}
	s.opened = true
	if !s.streaming {
		s.mu.Lock()
		s.stats.Phase = "snapshot"
		s.mu.Unlock()
	} else {
		s.startStreaming()
	}
	s.wg.Add(1)
	go s.sampleLag()
	return nil
}

// setStart records where streaming starts and whether a copy comes first.
func (s *Source) setStart(lsn pglogrepl.LSN, copying bool) {
	s.streamAt = lsn
	s.mu.Lock()
	if s.acked < lsn {
		s.acked = lsn
	}
	s.stats.AckedLSN = s.acked
	s.mu.Unlock()
	if copying {
		s.pos = position{snapshot: true, lsn: lsn}
		if s.snap != nil && s.snap.hasKey {
			s.pos.lastKey, s.pos.hasKey = s.snap.lastKey, true
		}
		return
	}
	s.pos = position{lsn: lsn}
	s.streaming = true
}

// createSlot creates the slot on rc, a replication connection; with
// Config.Snapshot it also begins the copy under the slot's exported snapshot
// on conn.
func (s *Source) createSlot(ctx context.Context, conn *pgx.Conn, rc *pgconn.PgConn) (pglogrepl.LSN, error) {
	action := "NOEXPORT_SNAPSHOT"
	if s.cfg.Snapshot {
		action = "EXPORT_SNAPSHOT"
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, rc, s.cfg.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: action})
	if err != nil {
		return 0, fmt.Errorf("create replication slot %q: %w", s.cfg.Slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("create replication slot %q: consistent point: %w", s.cfg.Slot, err)
	}
	s.log.Info("created replication slot", "consistent_point", lsn.String(), "snapshot", res.SnapshotName)
	if s.cfg.Snapshot {
		// The exported snapshot lives until rc runs another command: import it first.
		if err := s.beginCopy(ctx, conn, res.SnapshotName, lsn, "", false); err != nil {
			return 0, err
		}
	}
	return lsn, nil
}

// startStreaming enters the streaming phase at s.streamAt; the next Read
// starts the first session.
func (s *Source) startStreaming() {
	s.streaming = true
	s.pos = position{lsn: s.streamAt}
	s.mu.Lock()
	s.stats.Phase = "streaming"
	s.mu.Unlock()
	s.st = newStreamer(s, s.streamAt)
}

// startSession starts a replication session where the last one left off
// (the end of the last complete transaction it read): one connection
// attempt. Its goroutine streams until it fails or Close.
func (s *Source) startSession(ctx context.Context) error {
	if s.sessionDone != nil {
		<-s.sessionDone // the last session handed over its error: it is ending
	}
	conn, err := s.st.connect(ctx)
	if err != nil {
		return s.sessionError(err, true, s.st.resume)
	}
	s.sessions++
	s.mu.Lock()
	s.stats.Connected = true
	if s.sessions > 1 {
		s.stats.Reconnects++
	}
	s.mu.Unlock()
	done := make(chan struct{})
	s.sessionDone, s.running = done, true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		s.st.run(s.runCtx, conn)
	}()
	return nil
}

// Read returns the next events, at most max, and the position after them; an
// empty batch when only the position advanced (an idle or filtered stream).
// A batch that ends inside a transaction carries the position of the last
// complete one: resuming there replays the transaction, which the idempotent
// sink absorbs.
//
// Read makes one attempt to connect when it has to (the copy's connection,
// a replication session). When the copy or a session fails, Read returns the
// events read before the failure, then the failure (transient, or permanent
// for a dropped slot or publication); the next Read starts again where the
// last returned batch ended. A permanent error is returned by every later
// Read.
func (s *Source) Read(ctx context.Context, max int) (source.Batch, error) {
	if !s.opened {
		return source.Batch{}, errors.New("pgrepl: Read before Open")
	}
	if max < 1 {
		max = 1
	}
	if s.fatal != nil {
		return source.Batch{}, s.fatal
	}
	if err := s.readErr; err != nil {
		s.readErr = nil
		return source.Batch{}, s.failed(ctx, err)
	}
	if s.recopy {
		if err := s.resumeCopy(ctx); err != nil {
			return source.Batch{}, s.failed(ctx, err)
		}
	}
	if s.snap != nil {
		b, err := s.readSnapshot(ctx, max)
		return b, s.failed(ctx, err)
	}
	if !s.running && !s.idleNext {
		if err := s.startSession(ctx); err != nil {
			return source.Batch{}, s.failed(ctx, err)
		}
	}
	return s.readStream(ctx, max)
}

// failed records a permanent err, which every later Read returns; an error
// that only says Read's ctx ended is not one.
func (s *Source) failed(ctx context.Context, err error) error {
	if fault.IsPermanent(err) && ctx.Err() == nil {
		s.fatal = err
	}
	return err
}

func (s *Source) readStream(ctx context.Context, max int) (source.Batch, error) {
	if s.idleNext {
		s.idleNext = false
		return source.Batch{Position: s.pos.encode()}, nil
	}
	// A call returns the events of one hand-over at most (up to chunkSize):
	// the pipeline assembles its batches, and merging chunks here would copy
	// every event once more. Position-only hand-overs before them are taken
	// along.
	var events []source.Event
	advanced, idle := false, false
	var lastCommit time.Time
	for len(events) == 0 && !idle {
		if !s.curLive {
			var it item
			if !advanced {
				select {
				case it = <-s.items:
				case <-ctx.Done():
					return source.Batch{}, ctx.Err()
				}
			} else {
				got := false
				select {
				case it = <-s.items:
					got = true
				default:
				}
				if !got {
					break
				}
			}
			if it.err != nil {
				// The session ended: its goroutine hands over nothing more.
				s.running = false
				if advanced {
					s.readErr = it.err
					break
				}
				return source.Batch{}, s.failed(ctx, it.err)
			}
			s.cur, s.curOff, s.curLive = it, 0, true
		}
		n := min(max, len(s.cur.events)-s.curOff)
		events = s.cur.events[s.curOff : s.curOff+n : s.curOff+n]
		s.curOff += n
		if s.curOff == len(s.cur.events) {
			if s.cur.pos > s.pos.lsn {
				s.pos.lsn = s.cur.pos
				advanced = true
			}
			if !s.cur.commitTime.IsZero() {
				lastCommit = s.cur.commitTime
			}
			idle = s.cur.idle
			s.cur, s.curLive = item{}, false
		}
	}
	if idle && len(events) > 0 {
		s.idleNext = true
	}
	s.mu.Lock()
	s.stats.Events += uint64(len(events))
	if !lastCommit.IsZero() {
		s.stats.LastCommit = lastCommit
	}
	s.mu.Unlock()
	return source.Batch{Events: events, Position: s.pos.encode()}, nil
}

// Ack records that everything up to upTo is durable; the next standby status
// update reports it as flushed. Positions of the snapshot phase need no
// acknowledgement. Ack never moves the flushed position backwards.
func (s *Source) Ack(ctx context.Context, upTo source.Position) error {
	p, err := parsePosition(upTo)
	if err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	if p.snapshot {
		return nil
	}
	s.mu.Lock()
	if p.lsn > s.acked {
		s.acked = p.lsn
		s.stats.AckedLSN = p.lsn
	}
	s.mu.Unlock()
	return nil
}

// Stats returns the source's counters.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close stops streaming, sends a last status update with the acknowledged
// position when connected, and releases the connections and spill files.
func (s *Source) Close(ctx context.Context) error {
	if !s.opened {
		return nil
	}
	s.opened = false
	if s.running {
		// Give the last Ack a moment to reach the server (it goes out within
		// ackPoll), so that the slot stands where the checkpoint does.
		deadline := time.Now().Add(10 * ackPoll)
		for time.Now().Before(deadline) {
			st := s.Stats()
			if st.FlushedLSN >= st.AckedLSN {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close PostgreSQL source: %w", ctx.Err())
	}
	if s.snap != nil {
		s.snap.close()
		s.snap = nil
	}
	return nil
}

// sampleLag reads the slot's lag and confirmed position every LagInterval.
func (s *Source) sampleLag() {
	defer s.wg.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t := time.NewTicker(s.cfg.LagInterval)
	defer t.Stop()
	for {
		if conn == nil {
			c, err := s.connectSQL(s.runCtx)
			if err == nil {
				conn = c
			}
		}
		if conn != nil {
			var lag *int64
			var confirmed *string
			err := conn.QueryRow(s.runCtx, `SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, confirmed_flush_lsn::text
				FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&lag, &confirmed)
			if err == nil && lag != nil && confirmed != nil {
				lsn, _ := pglogrepl.ParseLSN(*confirmed)
				s.mu.Lock()
				s.stats.SlotLagBytes, s.stats.ConfirmedLSN = *lag, lsn
				s.mu.Unlock()
			} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				conn.Close(context.Background())
				conn = nil
			}
		}
		select {
		case <-s.runCtx.Done():
			return
		case <-t.C:
		}
	}
}
