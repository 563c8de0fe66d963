package emulator

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgWriter copies every event to a PostgreSQL table, one transaction per
// request, so that the logical-replication source reads the same stream.
type pgWriter struct {
	conn   *pgx.Conn
	table  string // quoted identifier
	tenant string
	flavor string
}

// pgSchema is the table every event is written to (%s: the quoted table name).
const pgSchema = `CREATE TABLE IF NOT EXISTS %s (
  locator        text PRIMARY KEY,
  request_id     text NOT NULL DEFAULT '',
  user_locator   text NOT NULL DEFAULT '',
  username       text NOT NULL DEFAULT '',
  transaction_id text NOT NULL DEFAULT '',
  tenant         text NOT NULL,
  flavor         text NOT NULL,
  type           text NOT NULL,
  occurred_at    timestamptz NOT NULL,
  data           json NOT NULL
)`

const pgColumns = 10

func newPGWriter(ctx context.Context, dsn, table, tenant, flavor string) (*pgWriter, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	w := &pgWriter{conn: conn, table: pgx.Identifier{table}.Sanitize(), tenant: tenant, flavor: flavor}
	if _, err := conn.Exec(cctx, fmt.Sprintf(pgSchema, w.table)); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("create table %s: %w", w.table, err)
	}
	return w, nil
}

func (w *pgWriter) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return w.conn.Close(ctx)
}

// insertSQL returns a multi-row INSERT for n rows; replays of the same seed
// into an existing table insert nothing twice.
func (w *pgWriter) insertSQL(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(w.table)
	b.WriteString(" (locator, request_id, user_locator, username, transaction_id, tenant, flavor, type, occurred_at, data) VALUES ")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for j := 0; j < pgColumns; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(i*pgColumns + j + 1))
		}
		b.WriteByte(')')
	}
	b.WriteString(" ON CONFLICT (locator) DO NOTHING")
	return b.String()
}

// write inserts recs (whose first has store index from), grouped by request:
// each request is one explicit transaction, pipelined with the others.
func (w *pgWriter) write(ctx context.Context, st *store, recs []record, reqs []request, from int) error {
	st.mu.RLock()
	types := st.types
	st.mu.RUnlock()
	batch := &pgx.Batch{}
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		err := w.conn.SendBatch(ctx, batch).Close()
		batch = &pgx.Batch{}
		if err != nil {
			return fmt.Errorf("write events to PostgreSQL table %s: %w", w.table, err)
		}
		return nil
	}
	for _, rq := range reqs {
		lo, hi := int(rq.first)-from, int(rq.first+rq.n)-from
		args := make([]any, 0, (hi-lo)*pgColumns)
		for i := lo; i < hi; i++ {
			r := &recs[i]
			u := st.users[r.user]
			e := Event{Locator: st.locatorOf(r)}
			if w.flavor == FlavorClassic {
				e.Username, e.TransactionID = u.name, rq.id
			} else {
				e.RequestID, e.UserLocator = rq.id, u.locator
			}
			args = append(args, e.Locator, e.RequestID, e.UserLocator, e.Username, e.TransactionID,
				w.tenant, w.flavor, types[r.typ], time.UnixMilli(r.ms).UTC(), string(r.data()))
		}
		batch.Queue("BEGIN")
		batch.Queue(w.insertSQL(hi-lo), args...)
		batch.Queue("COMMIT")
		if batch.Len() >= 3*500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
