package pgrepl

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/tributary-cdc/tributary/source"
)

// snapshot is the copy of the rows that existed at the slot's creation (or,
// when resuming, at a fresh snapshot), in locator order.
type snapshot struct {
	conn    *pgx.Conn
	tx      pgx.Tx
	rows    pgx.Rows
	slotLSN pglogrepl.LSN
	lastKey string
	hasKey  bool
}

func (sn *snapshot) close() {
	if sn.rows != nil {
		sn.rows.Close()
	}
	if sn.tx != nil {
		_ = sn.tx.Rollback(context.Background())
	}
	sn.conn.Close(context.Background())
}

// beginCopy starts the copy on conn, under the exported snapshot name (or a
// fresh one when name is empty), of the rows whose locator sorts after after.
func (s *Source) beginCopy(ctx context.Context, conn *pgx.Conn, name string, slotLSN pglogrepl.LSN, after string, hasKey bool) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin snapshot copy: %w", err)
	}
	if name != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(name, "'", "''")+"'"); err != nil {
			_ = tx.Rollback(context.Background())
			return fmt.Errorf("import the slot's snapshot %s: %w", name, err)
		}
	}
	cols := make([]string, 0, numFields)
	for _, f := range s.cfg.columnFields() {
		if f.column == "" {
			cols = append(cols, "NULL::text")
		} else {
			cols = append(cols, pgx.Identifier{f.column}.Sanitize()+"::text")
		}
	}
	key := pgx.Identifier{s.cfg.Columns.Locator}.Sanitize()
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + s.quotedTable()
	var args []any
	if hasKey {
		q += " WHERE " + key + " > $1::text::" + s.keyType
		args = append(args, after)
	}
	q += " ORDER BY " + key
	// The rows stream over the whole copy, beyond Open's ctx.
	rows, err := tx.Query(s.runCtxOr(ctx), q, args...)
	if err != nil {
		_ = tx.Rollback(context.Background())
		return fmt.Errorf("snapshot copy of %s: %w", s.quotedTable(), err)
	}
	s.snap = &snapshot{conn: conn, tx: tx, rows: rows, slotLSN: slotLSN, lastKey: after, hasKey: hasKey}
	return nil
}

func (s *Source) runCtxOr(ctx context.Context) context.Context {
	if s.runCtx != nil {
		return s.runCtx
	}
	return ctx
}

// readSnapshot returns the next copied rows. Their Seq is the slot's LSN minus
// one, below every streamed commit, so that a streamed update of a copied row
// wins. When the copy ends, the batch's position is where streaming starts.
// When the copy fails, the rows read in this call are dropped and the error
// returned; the next Read copies again after the last row returned, under a
// fresh snapshot (see resumeCopy).
func (s *Source) readSnapshot(ctx context.Context, max int) (source.Batch, error) {
	sn := s.snap
	seq := uint64(sn.slotLSN)
	if seq > 0 {
		seq--
	}
	events := make([]source.Event, 0, min(max, 4096))
	var t tuple
	for len(events) < max {
		if !sn.rows.Next() {
			err := sn.rows.Err()
			if err == nil {
				err = sn.tx.Commit(s.runCtx)
			}
			if err != nil {
				return source.Batch{}, s.copyFailed(err)
			}
			sn.tx, sn.rows = nil, nil
			sn.close()
			s.snap = nil
			s.log.Info("snapshot copy done", "rows", s.Stats().SnapshotRows+uint64(len(events)))
			s.countSnapshot(len(events))
			s.startStreaming()
			return source.Batch{Events: events, Position: s.pos.encode()}, nil
		}
		raw := sn.rows.RawValues()
		t.null = 0
		for i := range t.v {
			t.v[i] = string(raw[i])
			if raw[i] == nil {
				t.null |= 1 << i
			}
		}
		if !t.null.has(fLocator) {
			// A NULL locator (possible without a primary key) is no place
			// to resume from: the rows sort last, and a resumed copy skips
			// them.
			sn.lastKey, sn.hasKey = t.v[fLocator], true
		}
		events = append(events, s.toEvent(&t, seq))
	}
	s.countSnapshot(len(events))
	s.pos = position{snapshot: true, lsn: sn.slotLSN, lastKey: sn.lastKey, hasKey: sn.hasKey}
	return source.Batch{Events: events, Position: s.pos.encode()}, nil
}

// copyFailed ends a failed copy and describes it; the next Read resumes it
// after the last row returned.
func (s *Source) copyFailed(err error) error {
	s.snap.close()
	s.snap = nil
	s.recopy = true
	after := "the first row"
	if s.pos.hasKey {
		after = fmt.Sprintf("locator %q", s.pos.lastKey)
	}
	return classify(fmt.Errorf("postgres snapshot copy of %s interrupted (copying again after %s, under a fresh snapshot, on the next attempt): %w", s.quotedTable(), after, err))
}

// resumeCopy starts the copy again after the last row returned, under a
// fresh snapshot, as Open does for a snapshot: position: one connection
// attempt.
func (s *Source) resumeCopy(ctx context.Context) error {
	conn, err := s.connectSQL(ctx)
	if err != nil {
		return classify(fmt.Errorf("postgres snapshot copy: cannot connect (copying again on the next attempt): %w", err))
	}
	if err := s.beginCopy(ctx, conn, "", s.pos.lsn, s.pos.lastKey, s.pos.hasKey); err != nil {
		conn.Close(context.Background())
		return classify(fmt.Errorf("postgres snapshot copy: %w", err))
	}
	s.recopy = false
	s.log.Info("copying the table again after an interruption, under a fresh snapshot; rows committed since the slot's position come again from the slot", "slot_lsn", s.pos.lsn.String(), "after", s.pos.lastKey)
	return nil
}

func (s *Source) countSnapshot(n int) {
	s.mu.Lock()
	s.stats.Events += uint64(n)
	s.stats.SnapshotRows += uint64(n)
	s.mu.Unlock()
}
