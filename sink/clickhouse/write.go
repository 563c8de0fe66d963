package clickhouse

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/mapping"
)

// Write inserts rows, table by table (in name order), in INSERTs of at most
// BatchRows rows, each naming its columns. It makes one attempt per INSERT
// and stops at the first failure, classified with internal/fault: transient
// (network, timeouts, overload: the pipeline retries), Permanent (schema
// mismatch, privileges) or Poison (a value ClickHouse cannot hold or refuses
// for its content: the pipeline isolates the event). On error some tables or
// chunks may have landed: writing the same rows again is safe, since
// ReplacingMergeTree collapses them. Every table in rows must have been
// passed to Ensure.
func (s *Sink) Write(ctx context.Context, rows *mapping.Rows) error {
	if err := s.write(ctx, rows); err != nil {
		s.failures.Add(1)
		return classifyErr(err)
	}
	return nil
}

func (s *Sink) write(ctx context.Context, rows *mapping.Rows) error {
	if rows == nil || rows.Len() == 0 {
		return nil
	}
	s.mu.Lock()
	tables := s.tables
	s.mu.Unlock()
	names := make([]string, 0, len(rows.ByTable))
	for name, rs := range rows.ByTable {
		if rs.Len() > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names { // refuse before anything is written
		if tables[name] == nil {
			return fault.Permanent(fmt.Errorf("write to ClickHouse: table %q is not part of the ensured schema", name))
		}
	}
	for _, name := range names {
		tw := tables[name]
		all := rows.ByTable[name]
		for start := 0; start < all.Len(); start += s.cfg.BatchRows {
			chunk := all
			if all.Len() > s.cfg.BatchRows {
				chunk = all.Slice(start, min(start+s.cfg.BatchRows, all.Len()))
			}
			if err := s.insert(ctx, tw, chunk); err != nil {
				return fmt.Errorf("write %d rows to %s.%s: %w", chunk.Len(), s.cfg.Database, name, err)
			}
		}
	}
	return nil
}

// insert sends one chunk: one attempt.
func (s *Sink) insert(ctx context.Context, tw *tableWriter, rows *mapping.TableRows) error {
	cols, err := tw.toColumns(rows)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := s.sendOnce(ctx, tw, cols); err != nil {
		return err
	}
	took := time.Since(start)
	s.inserts.Add(1)
	s.rows.Add(uint64(rows.Len()))
	s.insertNanos.Add(int64(took))
	if s.cfg.OnInsert != nil {
		s.cfg.OnInsert(tw.name, rows.Len(), took)
	}
	s.log.Debug("inserted rows", "table", tw.name, "rows", rows.Len(), "took", took.String())
	return nil
}

// sendOnce runs one INSERT of the prepared columns, bounded by WriteTimeout.
//
// The batch gets ctx itself, not a per-attempt timeout context: clickhouse-go
// closes a batch's TCP connection when its context ends, from a watchdog
// goroutine that can still fire after Send has returned the connection to the
// pool, so cancelling a short-lived context right after Send could close a
// connection another insert is already using ("use of closed network
// connection"). Stalls are bounded by the driver's ReadTimeout (WriteTimeout).
func (s *Sink) sendOnce(ctx context.Context, tw *tableWriter, cols []any) error {
	if len(s.insertSettings) > 0 {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(s.insertSettings))
	}
	batch, err := s.conn.PrepareBatch(ctx, tw.insert)
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	var kept keep
	defer func() {
		_ = batch.Close()
		kept.release() // after Close: nothing reads the columns any more
	}()
	bcols := batch.Columns()
	for i, c := range cols {
		if i < len(bcols) && fastAppend(bcols[i], c, &tw.bufs[i], &kept) {
			continue
		}
		if i < len(bcols) {
			borrowFixed(bcols[i], &tw.bufs[i], &kept)
		}
		if err := batch.Column(i).Append(c); err != nil {
			_ = batch.Abort()
			return fault.Poison(fmt.Errorf("append column %s: %w", tw.cols[i].Name, err))
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send insert: %w", err)
	}
	return nil
}
