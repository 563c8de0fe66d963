// Package chstore keeps checkpoints in a ClickHouse table next to the data:
//
//	<db>._tributary_checkpoints (pipeline String, position String,
//	    events UInt64, saved_at DateTime('UTC'), saved_at_ms UInt16,
//	    seq UInt64, deleted UInt8)
//	ENGINE = ReplacingMergeTree(seq) ORDER BY pipeline
//
// Every Save inserts a row with a larger seq than any before it for that
// pipeline, and Load reads the pipeline's row under FINAL, so the latest save
// wins even before ClickHouse merges. Reset inserts a tombstone (deleted = 1).
// The layout is the same on every server version (18.16 has no DateTime64).
package chstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tributary-cdc/tributary/checkpoint"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
)

var _ checkpoint.Store = (*Store)(nil)

// Table is the name of the checkpoint table.
const Table = "_tributary_checkpoints"

// Store keeps checkpoints in a ClickHouse table. It is safe for concurrent use.
type Store struct {
	conn driver.Conn
	db   string
	own  bool // Close closes conn

	mu      sync.Mutex
	ensured bool
	// insertSettings are the sink's pinned insert settings this server
	// knows (chsink.InsertSettings): a save is stored when it returns.
	insertSettings clickhouse.Settings
	lastSeq        map[string]uint64 // the highest seq known per pipeline
	now            func() time.Time
}

// New returns a store on an existing connection (for instance
// (*chsink.Sink).Conn()), keeping its table in database. It makes no query;
// the table is created by Ensure or the first Save. Close leaves conn open.
func New(conn driver.Conn, database string) *Store {
	return &Store{conn: conn, db: database, lastSeq: map[string]uint64{}, now: time.Now}
}

// Open connects to ClickHouse with cfg (see chsink.Open) and returns a store
// in cfg.Database that owns the connection.
func Open(ctx context.Context, cfg chsink.Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid ClickHouse configuration: %w", err)
	}
	conn, err := chsink.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := New(conn, cfg.Database)
	s.own = true
	return s, nil
}

func (s *Store) table() string { return s.db + "." + Table }

// DDL returns the statement that creates the checkpoint table in database.
func DDL(database string) string {
	return "CREATE TABLE IF NOT EXISTS " + database + "." + Table + ` (
    pipeline String COMMENT 'Name of the pipeline (--pipeline).',
    position String COMMENT 'Where the source resumes: a paging token or an LSN.',
    events UInt64 COMMENT 'Events written by the pipeline up to position, in total.',
    saved_at DateTime('UTC') COMMENT 'When the checkpoint was saved, whole seconds.',
    saved_at_ms UInt16 COMMENT 'Milliseconds of saved_at.',
    seq UInt64 COMMENT 'Save order: strictly increasing per pipeline; the highest wins.',
    deleted UInt8 COMMENT '1: a reset (tombstone); the pipeline starts over.'
)
ENGINE = ReplacingMergeTree(seq)
ORDER BY pipeline`
}

// Ensure creates the database and the checkpoint table if they are missing.
// It is idempotent.
func (s *Store) Ensure(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ensureLocked(ctx)
}

func (s *Store) ensureLocked(ctx context.Context) error {
	if s.ensured {
		return nil
	}
	pinned, err := chsink.InsertSettings(ctx, s.conn)
	if err != nil {
		return err
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", s.db, Table).Scan(&n); err != nil {
		return fmt.Errorf("look up checkpoint table %s: %w", s.table(), err)
	}
	if n == 0 {
		var dbs uint64
		if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", s.db).Scan(&dbs); err != nil {
			return fmt.Errorf("look up database %s: %w", s.db, err)
		}
		if dbs == 0 {
			if err := s.conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db); err != nil {
				return fmt.Errorf("create database %s: %w", s.db, err)
			}
		}
		if err := s.conn.Exec(ctx, DDL(s.db)); err != nil {
			return fmt.Errorf("create checkpoint table %s: %w", s.table(), err)
		}
	}
	s.ensured = true
	s.insertSettings = pinned
	return nil
}

// missing reports whether err says the table or its database does not exist.
func missing(err error) bool {
	var exc *clickhouse.Exception
	return errors.As(err, &exc) && (exc.Code == 60 || exc.Code == 81) // UNKNOWN_TABLE, UNKNOWN_DATABASE
}

// Load returns the latest checkpoint of pipeline; none when the table does
// not exist yet or the last entry is a reset.
func (s *Store) Load(ctx context.Context, pipeline string) (checkpoint.Checkpoint, bool, error) {
	rows, err := s.conn.Query(ctx, "SELECT position, events, saved_at, saved_at_ms, seq, deleted FROM "+s.table()+
		" FINAL WHERE pipeline = ? ORDER BY seq DESC LIMIT 1", pipeline)
	if missing(err) {
		return checkpoint.Checkpoint{}, false, nil
	}
	if err != nil {
		return checkpoint.Checkpoint{}, false, fmt.Errorf("load checkpoint of %s from %s: %w", pipeline, s.table(), err)
	}
	defer rows.Close()
	var (
		position string
		events   uint64
		savedAt  time.Time
		ms       uint16
		seq      uint64
		deleted  uint8
		found    bool
	)
	for rows.Next() {
		if err := rows.Scan(&position, &events, &savedAt, &ms, &seq, &deleted); err != nil {
			return checkpoint.Checkpoint{}, false, fmt.Errorf("load checkpoint of %s: %w", pipeline, err)
		}
		found = true
	}
	if err := rows.Err(); err != nil {
		return checkpoint.Checkpoint{}, false, fmt.Errorf("load checkpoint of %s: %w", pipeline, err)
	}
	if !found {
		return checkpoint.Checkpoint{}, false, nil
	}
	s.mu.Lock()
	s.lastSeq[pipeline] = max(s.lastSeq[pipeline], seq)
	s.mu.Unlock()
	if deleted != 0 {
		return checkpoint.Checkpoint{}, false, nil
	}
	return checkpoint.Checkpoint{
		Pipeline: pipeline,
		Position: source.Position(position),
		Events:   events,
		SavedAt:  savedAt.Add(time.Duration(ms) * time.Millisecond).UTC(),
	}, true, nil
}

// nextSeq returns a seq larger than any the pipeline has: the wall clock in
// microseconds, or the last seq plus one when the clock is behind it. The
// last seq is read from the table once per pipeline and process, so seq
// stays monotonic across restarts even if the clock stepped back.
func (s *Store) nextSeq(ctx context.Context, pipeline string) (uint64, error) {
	last, known := s.lastSeq[pipeline]
	if !known {
		if err := s.conn.QueryRow(ctx, "SELECT max(seq) FROM "+s.table()+" WHERE pipeline = ?", pipeline).Scan(&last); err != nil {
			return 0, fmt.Errorf("read the last seq of %s: %w", pipeline, err)
		}
	}
	seq := max(uint64(s.now().UnixMicro()), last+1)
	s.lastSeq[pipeline] = seq
	return seq, nil
}

func (s *Store) insert(ctx context.Context, cp checkpoint.Checkpoint, deleted uint8) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ensureLocked(ctx); err != nil {
		return err
	}
	seq, err := s.nextSeq(ctx, cp.Pipeline)
	if err != nil {
		return err
	}
	at := cp.SavedAt
	if at.IsZero() {
		at = s.now()
	}
	at = at.UTC()
	if len(s.insertSettings) > 0 {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(s.insertSettings))
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table()+" (pipeline, position, events, saved_at, saved_at_ms, seq, deleted)")
	if err != nil {
		return fmt.Errorf("prepare checkpoint insert: %w", err)
	}
	defer batch.Close()
	if err := batch.Append(cp.Pipeline, string(cp.Position), cp.Events, at.Truncate(time.Second),
		uint16(at.Nanosecond()/int(time.Millisecond)), seq, deleted); err != nil {
		return fmt.Errorf("append checkpoint row: %w", err)
	}
	if err := batch.Send(); err != nil {
		delete(s.lastSeq, cp.Pipeline) // unknown whether it landed: re-read next time
		return fmt.Errorf("insert checkpoint row: %w", err)
	}
	return nil
}

// Save inserts cp as the pipeline's latest checkpoint; it is durable in
// ClickHouse when Save returns. A zero SavedAt is set to now.
// Acquire returns the latest checkpoint with a lease. (Stub: generations
// are not kept yet.)
func (s *Store) Acquire(ctx context.Context, pipeline string) (checkpoint.Lease, checkpoint.Checkpoint, bool, error) {
	cp, found, err := s.Load(ctx, pipeline)
	return checkpoint.Lease{Pipeline: pipeline}, cp, found, err
}

func (s *Store) Save(ctx context.Context, _ checkpoint.Lease, cp checkpoint.Checkpoint) error {
	if cp.Pipeline == "" {
		return errors.New("save checkpoint: empty pipeline name")
	}
	if err := s.insert(ctx, cp, 0); err != nil {
		return fmt.Errorf("save checkpoint of %s to %s: %w", cp.Pipeline, s.table(), err)
	}
	return nil
}

// Reset writes a tombstone, so that Load finds no checkpoint and the
// pipeline starts over.
func (s *Store) Reset(ctx context.Context, pipeline string) error {
	if err := s.insert(ctx, checkpoint.Checkpoint{Pipeline: pipeline}, 1); err != nil {
		return fmt.Errorf("reset checkpoint of %s in %s: %w", pipeline, s.table(), err)
	}
	return nil
}

// Close closes the connection if the store opened it (Open), and does
// nothing if it was given one (New).
func (s *Store) Close() error {
	if !s.own {
		return nil
	}
	if err := s.conn.Close(); err != nil {
		return fmt.Errorf("close ClickHouse connection: %w", err)
	}
	return nil
}
