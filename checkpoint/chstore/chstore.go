// Package chstore keeps checkpoints in a ClickHouse table next to the data:
//
//	<db>._tributary_checkpoints (pipeline String, position String,
//	    events UInt64, saved_at DateTime('UTC'), saved_at_ms UInt16,
//	    seq UInt64, deleted UInt8, generation UInt64)
//	ENGINE = ReplacingMergeTree(seq) ORDER BY pipeline
//
// Every row is an entry of one generation (a lease, see package
// checkpoint) and its seq is generation<<32 | counter, the counter counting
// the entries within the generation: 0 is the row Acquire writes to carry
// the latest checkpoint into its new generation, 1 a Reset's tombstone
// (deleted = 1), 2 and up the saves. So the newest generation's rows have
// the highest seq whatever the order they arrive in and whatever the
// clocks say, and under FINAL (which keeps the row with the highest seq per
// pipeline) a stale process's late save never wins over a newer generation.
// The layout is the same on every server version (18.16 has no
// DateTime64); tables of earlier versions, without the generation column,
// get it on first use, and their rows' seqs (a microsecond clock, about
// 2^50) stay below the first generation chosen above them.
package chstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/internal/fault"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
)

var _ checkpoint.Store = (*Store)(nil)

// Table is the name of the checkpoint table.
const Table = "_tributary_checkpoints"

// The parts of seq (see the package comment).
const (
	counterBits      = 32
	counterMask      = 1<<counterBits - 1
	maxGeneration    = 1<<(64-counterBits) - 1
	counterAcquire   = 0 // the row Acquire carries the latest checkpoint in with
	counterReset     = 1 // Reset's tombstone: above a concurrent Acquire's row of the same generation
	counterFirstSave = 2
)

// Store keeps checkpoints in a ClickHouse table. It is safe for concurrent
// use; its methods make one attempt each and classify failures with
// internal/fault.
type Store struct {
	cfg     *chsink.Config // NewLazy: how to connect on first use
	db      string
	cluster chsink.Cluster // the table is created ON CLUSTER, replicated
	log     *slog.Logger   // WithLogger; nil logs nothing
	// syncWait bounds the wait for a replica to catch up (syncLocked);
	// zero is syncTimeout.
	syncWait time.Duration

	mu   sync.Mutex
	conn driver.Conn
	snk  *chsink.Sink // the connection the store made (NewLazy, Open), closed by Close
	// ensured: the table exists with every column, and insertSettings are
	// the sink's pinned insert settings this server knows
	// (chsink.InsertSettings), so that a save is stored when it returns.
	ensured        bool
	insertSettings clickhouse.Settings
	now            func() time.Time
	// beforeVerify, when set (tests), runs between the insert of a new
	// generation's row and the check that no other process took the same
	// generation at the same moment.
	beforeVerify func(ctx context.Context, generation uint64)
}

// New returns a store on an existing connection (for instance
// (*chsink.Sink).Conn()), keeping its table in database. It makes no query;
// the table is created or upgraded by Ensure or the first Acquire, Save or
// Reset. Close leaves conn open.
func New(conn driver.Conn, database string) *Store {
	return &Store{conn: conn, db: database, now: time.Now}
}

// NewLazy returns a store in cfg.Database that connects to ClickHouse with
// cfg on first use, not before, so that a process can build it before
// ClickHouse answers. Each call makes at most one connection attempt: a
// failed one is returned (permanent for bad credentials or an invalid
// configuration, transient for an unreachable server) and the next call
// tries again. Close closes the connection. The only error is an invalid
// cfg (permanent).
func NewLazy(cfg chsink.Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fault.Permanent(fmt.Errorf("invalid ClickHouse configuration for checkpoints: %w", err))
	}
	return &Store{cfg: &cfg, db: cfg.Database, cluster: cfg.ClusterSpec(), now: time.Now}, nil
}

// Open is NewLazy followed by connecting at once, for commands that want a
// connection failure reported up front.
func Open(ctx context.Context, cfg chsink.Config) (*Store, error) {
	s, err := NewLazy(cfg)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.connLocked(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// WithCluster makes the store create its table on cluster c (ON CLUSTER, a
// ReplicatedReplacingMergeTree on every node: see ClusterDDL) and returns it.
// Call it before the first use.
func (s *Store) WithCluster(c chsink.Cluster) *Store {
	s.cluster = c
	return s
}

// WithLogger makes the store log what it works around (a replica it cannot
// bring up to date, see syncLocked) to l, and returns it. Call it before the
// first use.
func (s *Store) WithLogger(l *slog.Logger) *Store {
	s.log = l
	return s
}

// syncTimeout bounds the wait for a replica to catch up (syncLocked).
const syncTimeout = 15 * time.Second

// syncLocked makes the replica the connection reaches catch up with the
// cluster's log of the checkpoint table (SYSTEM SYNC REPLICA), so that what
// it reads next includes every row written through the other replicas
// before now. Without a cluster there is nothing to wait for. A replica that
// must fetch a row from a replica that is down cannot finish: after
// syncTimeout the error is transient.
func (s *Store) syncLocked(ctx context.Context) error {
	if !s.cluster.Enabled() {
		return nil
	}
	wait := cmp.Or(s.syncWait, syncTimeout)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := s.conn.Exec(ctx, "SYSTEM SYNC REPLICA "+s.table()); err != nil {
		return s.classify(fmt.Errorf("bring this replica's copy of %s up to date (SYSTEM SYNC REPLICA, at most %s): %w", s.table(), wait, err))
	}
	return nil
}

// connLocked returns the connection, connecting first when the store is
// lazy and not connected yet (one attempt).
func (s *Store) connLocked(ctx context.Context) (driver.Conn, error) {
	if s.conn != nil {
		return s.conn, nil
	}
	if s.cfg == nil {
		return nil, fault.Permanent(errors.New("checkpoint store: no connection"))
	}
	snk, err := chsink.New(ctx, *s.cfg, nil) // one attempt; bad credentials are marked permanent
	if err != nil {
		return nil, fmt.Errorf("connect to ClickHouse for checkpoints: %w", err)
	}
	s.snk, s.conn = snk, snk.Conn()
	return s.conn, nil
}

func (s *Store) table() string { return s.db + "." + Table }

// DDL returns the statement that creates the checkpoint table in database.
func DDL(database string) string { return ClusterDDL(database, chsink.Cluster{}) }

// ClusterDDL returns the statement that creates the checkpoint table in
// database on cluster c: ON CLUSTER, and one ReplicatedReplacingMergeTree
// whose replicas are every node of the cluster, whatever its shard
// (chsink.CheckpointShard), so that any node reads the latest position. With
// a zero c it is DDL.
func ClusterDDL(database string, c chsink.Cluster) string {
	cols := make([]string, len(columns))
	for i, col := range columns {
		cols[i] = col[0]
		if !c.Enabled() { // 18.16 refuses replicated tables with column comments
			cols[i] += " COMMENT '" + col[1] + "'"
		}
	}
	return "CREATE TABLE IF NOT EXISTS " + database + "." + Table + c.OnCluster() + " (\n    " +
		strings.Join(cols, ",\n    ") + "\n)\nENGINE = " + c.CheckpointEngine(database, Table, "seq") + "\nORDER BY pipeline"
}

// columns are the checkpoint table's columns: definition, comment.
var columns = [...][2]string{
	{"pipeline String", "Name of the pipeline (--pipeline.name)."},
	{"position String", "Where the source resumes: a paging token or an LSN."},
	{"events UInt64", "Events written by the pipeline up to position, in total."},
	{"saved_at DateTime('UTC')", "When the checkpoint was saved, whole seconds."},
	{"saved_at_ms UInt16", "Milliseconds of saved_at."},
	{"seq UInt64", "generation<<32 | counter within the generation: the highest wins."},
	{"deleted UInt8", "1: a reset (tombstone); the pipeline starts over."},
	generationColumn,
}

// generationColumn is the column added in the version that fences
// checkpoints; tables created before it get it by ALTER TABLE.
var generationColumn = [2]string{"generation UInt64", "The lease (process start or reset) the row was written under; seq >> 32."}

// Ensure creates the database and the checkpoint table if they are missing
// and adds the generation column to a table of an earlier version. It is
// idempotent.
func (s *Store) Ensure(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ensureLocked(ctx)
}

func (s *Store) ensureLocked(ctx context.Context) error {
	conn, err := s.connLocked(ctx)
	if err != nil {
		return err
	}
	if s.ensured {
		return nil
	}
	pinned, err := chsink.InsertSettings(ctx, conn)
	if err != nil {
		return s.classify(err)
	}
	cols, err := s.columns(ctx, conn)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		var dbs uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", s.db).Scan(&dbs); err != nil {
			return s.classify(fmt.Errorf("look up database %s: %w", s.db, err))
		}
		if dbs == 0 {
			if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db+s.cluster.OnCluster()); err != nil {
				return s.classify(fmt.Errorf("create database %s: %w", s.db, err))
			}
		}
		if err := conn.Exec(ctx, ClusterDDL(s.db, s.cluster)); err != nil {
			return s.classify(fmt.Errorf("create checkpoint table %s: %w", s.table(), err))
		}
	} else if !cols["generation"] {
		def := generationColumn[0]
		if !s.cluster.Enabled() {
			def += " COMMENT '" + generationColumn[1] + "'"
		}
		if err := conn.Exec(ctx, "ALTER TABLE "+s.table()+s.cluster.OnCluster()+" ADD COLUMN "+def); err != nil {
			// Another process may have added it at the same moment
			// (18.16 knows no ADD COLUMN IF NOT EXISTS).
			if cols, cerr := s.columns(ctx, conn); cerr != nil || !cols["generation"] {
				return s.classify(fmt.Errorf("add column generation to checkpoint table %s: %w", s.table(), err))
			}
		}
	}
	s.ensured = true
	s.insertSettings = pinned
	return nil
}

// columns returns the checkpoint table's columns; none when it does not exist.
func (s *Store) columns(ctx context.Context, conn driver.Conn) (map[string]bool, error) {
	rows, err := conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = ?", s.db, Table)
	if err != nil {
		return nil, s.classify(fmt.Errorf("look up checkpoint table %s: %w", s.table(), err))
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("look up checkpoint table %s: %w", s.table(), err)
		}
		cols[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, s.classify(fmt.Errorf("look up checkpoint table %s: %w", s.table(), err))
	}
	return cols, nil
}

// permanentCodes are ClickHouse exceptions no retry of a checkpoint query
// can fix: the user may not read or write the table.
var permanentCodes = map[int32]bool{
	164: true, // READONLY
	192: true, // UNKNOWN_USER
	193: true, // WRONG_PASSWORD
	194: true, // REQUIRED_PASSWORD
	195: true, // IP_ADDRESS_NOT_ALLOWED
	497: true, // ACCESS_DENIED
	516: true, // AUTHENTICATION_FAILED
}

// classify marks err permanent when it is a ClickHouse refusal of the
// user's rights; anything else stays transient, for the pipeline to retry.
// When the table or its database is gone, the next call creates it again.
func (s *Store) classify(err error) error {
	if missing(err) {
		s.ensured = false
	}
	var exc *clickhouse.Exception
	if errors.As(err, &exc) && permanentCodes[exc.Code] {
		return fault.Permanent(err)
	}
	return err
}

// missing reports whether err says the table or its database does not exist.
func missing(err error) bool {
	var exc *clickhouse.Exception
	return errors.As(err, &exc) && (exc.Code == 60 || exc.Code == 81) // UNKNOWN_TABLE, UNKNOWN_DATABASE
}

// row is one entry of the table.
type row struct {
	position   string
	events     uint64
	savedAt    time.Time
	seq        uint64
	deleted    uint8
	generation uint64
}

// latestLocked reads the pipeline's newest row (FINAL keeps the highest seq);
// found is false when it has none. legacy says the table lacks the
// generation column (its rows have generation 0). A row that cannot be read
// or is inconsistent is a permanent error that says how to repair it.
func (s *Store) latestLocked(ctx context.Context, conn driver.Conn, pipeline string, legacy bool) (r row, found bool, err error) {
	gen := "generation"
	if legacy {
		gen = "toUInt64(0)"
	}
	rows, err := conn.Query(ctx, "SELECT position, events, saved_at, saved_at_ms, seq, deleted, "+gen+" FROM "+s.table()+
		" FINAL WHERE pipeline = ? ORDER BY seq DESC LIMIT 1", pipeline)
	if err != nil {
		return r, false, s.classify(fmt.Errorf("read checkpoint of pipeline %q from %s: %w", pipeline, s.table(), err))
	}
	defer rows.Close()
	for rows.Next() {
		var ms uint16
		if err := rows.Scan(&r.position, &r.events, &r.savedAt, &ms, &r.seq, &r.deleted, &r.generation); err != nil {
			return r, false, s.corrupt(pipeline, err.Error())
		}
		r.savedAt = r.savedAt.Add(time.Duration(ms) * time.Millisecond).UTC()
		found = true
	}
	if err := rows.Err(); err != nil {
		return r, false, s.classify(fmt.Errorf("read checkpoint of pipeline %q from %s: %w", pipeline, s.table(), err))
	}
	switch {
	case !found:
	case r.deleted > 1:
		return r, false, s.corrupt(pipeline, fmt.Sprintf("deleted is %d, not 0 or 1", r.deleted))
	case r.generation != 0 && r.generation != r.seq>>counterBits:
		return r, false, s.corrupt(pipeline, fmt.Sprintf("generation %d does not match seq %d (generation<<32 | counter)", r.generation, r.seq))
	}
	return r, found, nil
}

// corrupt is the permanent error of a row that cannot be used.
func (s *Store) corrupt(pipeline, why string) error {
	return checkpoint.Corrupt(fmt.Sprintf("the checkpoint row of pipeline %q in %s cannot be read (%s): repair the row, or run `tributary checkpoint reset --pipeline %s` to start the pipeline over from its configured start",
		pipeline, s.table(), why, pipeline))
}

// checkpointOf returns r as a checkpoint, and whether it is one (not a reset).
func checkpointOf(pipeline string, r row) (checkpoint.Checkpoint, bool) {
	if r.deleted != 0 {
		return checkpoint.Checkpoint{Pipeline: pipeline, Generation: r.generation}, false
	}
	return checkpoint.Checkpoint{
		Pipeline:   pipeline,
		Position:   source.Position(r.position),
		Events:     r.events,
		SavedAt:    r.savedAt,
		Generation: r.generation,
	}, true
}

// Load returns the latest checkpoint of pipeline; none when the table does
// not exist yet or the newest entry is a reset. It changes nothing (a table
// of an earlier version is read as it is, its rows as generation 0). When
// found is false but the pipeline has entries (it was reset, or started
// from scratch and saved nothing yet), cp carries their newest Generation.
func (s *Store) Load(ctx context.Context, pipeline string) (checkpoint.Checkpoint, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	conn, err := s.connLocked(ctx)
	if err != nil {
		return checkpoint.Checkpoint{}, false, err
	}
	legacy := false
	if !s.ensured {
		cols, err := s.columns(ctx, conn)
		if err != nil {
			return checkpoint.Checkpoint{}, false, err
		}
		if len(cols) == 0 {
			return checkpoint.Checkpoint{}, false, nil
		}
		legacy = !cols["generation"]
	}
	r, found, err := s.latestLocked(ctx, conn, pipeline, legacy)
	if missing(err) {
		return checkpoint.Checkpoint{}, false, nil // dropped since
	}
	if err != nil || !found {
		return checkpoint.Checkpoint{}, false, err
	}
	cp, ok := checkpointOf(pipeline, r)
	return cp, ok, nil
}

// Acquire reads the pipeline's newest row, then writes a row of a new
// generation above every generation and seq in the table, carrying that
// checkpoint (or its absence, as a tombstone) forward, and returns the
// new generation's lease with the checkpoint (its Generation is the new
// one, as a Load now reports). When another process took the same
// generation at the same moment (a second process starting, a reset), it
// returns a transient error: the retry takes the next generation.
func (s *Store) Acquire(ctx context.Context, pipeline string) (checkpoint.Lease, checkpoint.Checkpoint, bool, error) {
	if pipeline == "" {
		return checkpoint.Lease{}, checkpoint.Checkpoint{}, false, fault.Permanent(errors.New("acquire checkpoint: empty pipeline name"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLocked(ctx); err != nil {
		return checkpoint.Lease{}, checkpoint.Checkpoint{}, false, err
	}
	// On a cluster, the replica may have come back from an outage without
	// the newest generation yet, and the new one must be above it. When it
	// cannot catch up (a row it lacks is on a replica that is down), the
	// generation is chosen from what it has: that replica holds no newer
	// save a running process could still make (it is unreachable), so only
	// a second process starting at the same moment could choose the same.
	if err := s.syncLocked(ctx); err != nil && s.log != nil {
		s.log.Warn("checkpoint: choosing the new generation from a replica that may lag", "err", err)
	}
	r, found, err := s.latestLocked(ctx, s.conn, pipeline, false)
	if err != nil {
		return checkpoint.Lease{}, checkpoint.Checkpoint{}, false, err
	}
	gen, err := s.nextGeneration(pipeline, max(r.generation, r.seq>>counterBits))
	if err != nil {
		return checkpoint.Lease{}, checkpoint.Checkpoint{}, false, err
	}
	carried := row{deleted: 1, savedAt: s.now().UTC()}
	if found {
		carried = r
	}
	carried.seq, carried.generation = gen<<counterBits|counterAcquire, gen
	if err := s.insertLocked(ctx, pipeline, carried); err != nil {
		return checkpoint.Lease{}, checkpoint.Checkpoint{}, false, fmt.Errorf("acquire checkpoint of pipeline %q in %s: %w", pipeline, s.table(), err)
	}
	if err := s.verifyLocked(ctx, pipeline, gen); err != nil {
		return checkpoint.Lease{}, checkpoint.Checkpoint{}, false, fmt.Errorf("acquire checkpoint of pipeline %q: %w (retry to take the next generation)", pipeline, err)
	}
	cp, ok := checkpointOf(pipeline, carried)
	return checkpoint.Lease{Pipeline: pipeline, Generation: gen}, cp, ok, nil
}

// nextGeneration returns the generation after newest, or a permanent error
// when seq has no room for it.
func (s *Store) nextGeneration(pipeline string, newest uint64) (uint64, error) {
	if newest >= maxGeneration {
		return 0, fault.Permanent(fmt.Errorf("checkpoint of pipeline %q in %s is at generation %d, the last one seq can hold: delete its rows (ALTER TABLE %s DELETE WHERE pipeline = '%s') to start it over from its configured start",
			pipeline, s.table(), newest, s.table(), pipeline))
	}
	return newest + 1, nil
}

// verifyLocked checks that the row just written is the only one of
// generation gen or above: two processes that read the same newest row at
// the same moment chose the same generation, and at most one of them sees
// only its own row (inserts are synchronous), so at most one holds it.
func (s *Store) verifyLocked(ctx context.Context, pipeline string, gen uint64) error {
	if s.beforeVerify != nil {
		s.beforeVerify(ctx, gen)
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.table()+" WHERE pipeline = ? AND seq >= ?", pipeline, gen<<counterBits).Scan(&n); err != nil {
		return s.classify(fmt.Errorf("verify generation %d: %w", gen, err))
	}
	if n > 1 {
		return fmt.Errorf("another process acquired or reset pipeline %q at the same moment (generation %d)", pipeline, gen)
	}
	return nil
}

// Save checks with one query that no newer generation exists and that
// cp.Events does not go below the generation's newest entry
// (checkpoint.CheckSave), then inserts cp as the generation's next entry.
// It is durable in ClickHouse when Save returns. A zero SavedAt is set to
// now. Should a stale process's insert land after a newer Acquire despite
// the check, its seq is below the newer generation's and it never wins.
func (s *Store) Save(ctx context.Context, lease checkpoint.Lease, cp checkpoint.Checkpoint) error {
	if err := checkpoint.CheckSave(lease, cp, checkpoint.Newest{Exists: true, Generation: lease.Generation}); err != nil {
		return err // no lease at all: nothing to ask the table
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLocked(ctx); err != nil {
		return err
	}
	maxSeq, events, n, err := s.newestLocked(ctx, cp.Pipeline)
	if err != nil {
		return err
	}
	if (n == 0 || maxSeq>>counterBits < lease.Generation) && s.cluster.Enabled() {
		// The lease's own rows are missing: the table was dropped or its
		// rows deleted, or this replica came back from an outage and has
		// not fetched them yet. Only a replica that has caught up tells.
		if err := s.syncLocked(ctx); err != nil {
			return fmt.Errorf("save checkpoint of pipeline %q: this replica lacks generation %d: %w", cp.Pipeline, lease.Generation, err)
		}
		if maxSeq, events, n, err = s.newestLocked(ctx, cp.Pipeline); err != nil {
			return err
		}
	}
	if err := checkpoint.CheckSave(lease, cp, checkpoint.Newest{Exists: n > 0, Generation: maxSeq >> counterBits, Events: events}); err != nil {
		return err
	}
	seq := max(maxSeq+1, lease.Generation<<counterBits|counterFirstSave)
	if seq>>counterBits != lease.Generation {
		return fault.Permanent(fmt.Errorf("save checkpoint of pipeline %q: generation %d is full (%d saves): restart the process to take a new one", cp.Pipeline, lease.Generation, uint64(counterMask)))
	}
	at := cp.SavedAt
	if at.IsZero() {
		at = s.now()
	}
	r := row{position: string(cp.Position), events: cp.Events, savedAt: at.UTC(), seq: seq, generation: lease.Generation}
	if err := s.insertLocked(ctx, cp.Pipeline, r); err != nil {
		return fmt.Errorf("save checkpoint of pipeline %q to %s: %w", cp.Pipeline, s.table(), err)
	}
	return nil
}

// newestLocked reads the pipeline's highest seq, the events of its row and
// how many rows it has (none when the table was dropped since).
func (s *Store) newestLocked(ctx context.Context, pipeline string) (maxSeq, events, n uint64, err error) {
	err = s.conn.QueryRow(ctx, "SELECT max(seq), argMax(events, seq), count() FROM "+s.table()+" WHERE pipeline = ?", pipeline).
		Scan(&maxSeq, &events, &n)
	switch {
	case missing(err): // dropped since: the lease's generation is gone with it
		s.ensured = false
		return 0, 0, 0, nil
	case err != nil:
		return 0, 0, 0, s.classify(fmt.Errorf("save checkpoint of pipeline %q to %s: read its newest generation: %w", pipeline, s.table(), err))
	}
	return maxSeq, events, n, nil
}

// Reset writes a tombstone in a new generation, so that Load finds no
// checkpoint, the pipeline starts over, and every lease is fenced: a
// running pipeline stops at its next save. It reads only the pipeline's
// highest seq and generation, so it also replaces a row that cannot be read.
// A pipeline without any row (so without a lease) is left alone.
func (s *Store) Reset(ctx context.Context, pipeline string) error {
	if pipeline == "" {
		return fault.Permanent(errors.New("reset checkpoint: empty pipeline name"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLocked(ctx); err != nil {
		return err
	}
	// A reset chosen from a replica that lags could take the generation
	// of the running process it is meant to fence.
	if err := s.syncLocked(ctx); err != nil {
		return fmt.Errorf("reset checkpoint of pipeline %q: %w: run the reset again once every replica answers", pipeline, err)
	}
	var maxSeq, maxGen, n uint64
	if err := s.conn.QueryRow(ctx, "SELECT max(seq), max(generation), count() FROM "+s.table()+" WHERE pipeline = ?", pipeline).Scan(&maxSeq, &maxGen, &n); err != nil {
		return s.classify(fmt.Errorf("reset checkpoint of pipeline %q in %s: %w", pipeline, s.table(), err))
	}
	if n == 0 {
		return nil // nothing to forget, no lease to fence
	}
	gen, err := s.nextGeneration(pipeline, max(maxGen, maxSeq>>counterBits))
	if err != nil {
		return err
	}
	tomb := row{deleted: 1, savedAt: s.now().UTC(), seq: gen<<counterBits | counterReset, generation: gen}
	if err := s.insertLocked(ctx, pipeline, tomb); err != nil {
		return fmt.Errorf("reset checkpoint of pipeline %q in %s: %w", pipeline, s.table(), err)
	}
	if err := s.verifyLocked(ctx, pipeline, gen); err != nil {
		return fmt.Errorf("reset checkpoint of pipeline %q: %w: run the reset again", pipeline, err)
	}
	return nil
}

// insertLocked inserts r for pipeline with the pinned insert settings.
func (s *Store) insertLocked(ctx context.Context, pipeline string, r row) error {
	if len(s.insertSettings) > 0 {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(s.insertSettings))
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table()+" (pipeline, position, events, saved_at, saved_at_ms, seq, deleted, generation)")
	if err != nil {
		return s.classify(fmt.Errorf("prepare checkpoint insert: %w", err))
	}
	defer batch.Close()
	at := r.savedAt.UTC()
	if err := batch.Append(pipeline, r.position, r.events, at.Truncate(time.Second),
		uint16(at.Nanosecond()/int(time.Millisecond)), r.seq, r.deleted, r.generation); err != nil {
		return fmt.Errorf("append checkpoint row: %w", err)
	}
	if err := batch.Send(); err != nil {
		return s.classify(fmt.Errorf("insert checkpoint row: %w", err))
	}
	return nil
}

// Close closes the connection if the store made it (NewLazy, Open), and
// does nothing if it was given one (New).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snk == nil {
		return nil
	}
	err := s.snk.Close()
	s.snk, s.conn = nil, nil
	return err
}
