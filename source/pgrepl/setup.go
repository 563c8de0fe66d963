package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tributary-cdc/tributary/internal/fault"
)

// sessionParams are set on every connection so that values come as text in
// one fixed form (timestamps in UTC, ISO style).
func (s *Source) sessionParams(params map[string]string, replication bool) {
	params["TimeZone"] = "UTC"
	params["DateStyle"] = "ISO, MDY"
	params["extra_float_digits"] = "3"
	if params["application_name"] == "" {
		params["application_name"] = "tributary"
	}
	if replication {
		params["replication"] = "database"
		for k, v := range s.cfg.replParams {
			params[k] = v
		}
		if s.cfg.DecodingWorkMem != "" {
			params["logical_decoding_work_mem"] = s.cfg.DecodingWorkMem
		}
	} else {
		delete(params, "replication")
	}
}

// connectTimeout bounds a connection attempt when the DSN sets no
// connect_timeout.
const connectTimeout = 30 * time.Second

// connParams bounds the connection attempt and applies the tests' dialer.
func (s *Source) connParams(cc *pgconn.Config) {
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = connectTimeout
	}
	if s.cfg.dial != nil {
		cc.DialFunc = s.cfg.dial
		cc.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
		cc.Fallbacks = nil
	}
}

// connectSQL opens a normal (non-replication) connection: one attempt.
func (s *Source) connectSQL(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(s.cfg.DSN)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("parse --pg.dsn: %w", err))
	}
	s.sessionParams(cc.RuntimeParams, false)
	s.connParams(&cc.Config)
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return conn, nil
}

// connectReplication opens a logical replication connection: one attempt.
func (s *Source) connectReplication(ctx context.Context) (*pgconn.PgConn, error) {
	cc, err := pgconn.ParseConfig(s.cfg.DSN)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("parse --pg.dsn: %w", err))
	}
	s.sessionParams(cc.RuntimeParams, true)
	s.connParams(cc)
	conn, err := pgconn.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("open replication connection: %w", err)
	}
	return conn, nil
}

// tableInfo is what preflight learns about the table.
type tableInfo struct {
	oid        uint32
	keyType    string // format_type of the locator column
	dataIsJSON bool   // the data column is json or jsonb
}

// preflight checks everything the source needs from the database and returns
// every problem at once, each with what to do about it, as a permanent error;
// a failed query is returned as it is.
func (s *Source) preflight(ctx context.Context, conn *pgx.Conn) (tableInfo, error) {
	var info tableInfo
	var problems []error

	var walLevel string
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level')").Scan(&walLevel); err != nil {
		return info, fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		problems = append(problems, fmt.Errorf("wal_level is %q but logical replication needs wal_level = logical: set it in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL", walLevel))
	}

	var role string
	var super, repl bool
	if err := conn.QueryRow(ctx, "SELECT current_user, rolsuper, rolreplication FROM pg_roles WHERE rolname = current_user").Scan(&role, &super, &repl); err != nil {
		return info, fmt.Errorf("read the role's attributes: %w", err)
	}
	if !super && !repl {
		problems = append(problems, fmt.Errorf("role %q lacks the REPLICATION attribute needed for a replication connection: ALTER ROLE %s REPLICATION", role, pgx.Identifier{role}.Sanitize()))
	}

	var relkind, replident string
	err := conn.QueryRow(ctx, `SELECT c.oid, c.relkind::text, c.relreplident::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, s.schema, s.table).Scan(&info.oid, &relkind, &replident)
	if errors.Is(err, pgx.ErrNoRows) {
		problems = append(problems, fmt.Errorf("table %s.%s does not exist (--pg.table)", s.schema, s.table))
		return info, fault.Permanent(errors.Join(problems...))
	}
	if err != nil {
		return info, fmt.Errorf("look up table %s.%s: %w", s.schema, s.table, err)
	}
	if relkind != "r" && relkind != "p" {
		problems = append(problems, fmt.Errorf("%s.%s is not a table (relkind %q)", s.schema, s.table, relkind))
	}
	var canSelect, hasPK bool
	if err := conn.QueryRow(ctx, `SELECT has_table_privilege($1::oid, 'SELECT'),
		EXISTS (SELECT 1 FROM pg_index WHERE indrelid = $1::oid AND indisprimary)`, info.oid).Scan(&canSelect, &hasPK); err != nil {
		return info, fmt.Errorf("check table %s.%s: %w", s.schema, s.table, err)
	}
	if !canSelect {
		problems = append(problems, fmt.Errorf("role %q lacks SELECT on %s.%s: GRANT SELECT ON %s TO %s", role, s.schema, s.table, s.quotedTable(), pgx.Identifier{role}.Sanitize()))
	}
	switch {
	case replident == "n":
		problems = append(problems, fmt.Errorf("table %s.%s has REPLICA IDENTITY NOTHING, so its updates cannot be replicated: ALTER TABLE %s REPLICA IDENTITY DEFAULT (with a primary key) or FULL", s.schema, s.table, s.quotedTable()))
	case replident == "d" && !hasPK:
		problems = append(problems, fmt.Errorf("table %s.%s has no primary key and REPLICA IDENTITY DEFAULT, so its updates cannot be replicated: add a primary key (on %s) or ALTER TABLE %s REPLICA IDENTITY FULL", s.schema, s.table, s.cfg.Columns.Locator, s.quotedTable()))
	}

	rows, err := conn.Query(ctx, `SELECT attname, format_type(atttypid, atttypmod), atttypid::regtype::text
		FROM pg_attribute WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped`, info.oid)
	if err != nil {
		return info, fmt.Errorf("read the columns of %s.%s: %w", s.schema, s.table, err)
	}
	types := map[string]string{}
	for rows.Next() {
		var name, formatted, typ string
		if err := rows.Scan(&name, &formatted, &typ); err != nil {
			rows.Close()
			return info, fmt.Errorf("read the columns of %s.%s: %w", s.schema, s.table, err)
		}
		types[name] = typ
		if name == s.cfg.Columns.Locator {
			info.keyType = formatted
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return info, fmt.Errorf("read the columns of %s.%s: %w", s.schema, s.table, err)
	}
	for _, f := range s.cfg.columnFields() {
		if f.column != "" {
			if _, ok := types[f.column]; !ok {
				problems = append(problems, fmt.Errorf("table %s.%s has no column %q (--pg.column.%s)", s.schema, s.table, f.column, f.flag))
			}
		}
	}
	if t := types[s.cfg.Columns.OccurredAt]; t != "" && !strings.HasPrefix(t, "timestamp") {
		problems = append(problems, fmt.Errorf("column %q (--pg.column.occurred-at) is %s, want timestamptz or timestamp", s.cfg.Columns.OccurredAt, t))
	}
	t := types[s.cfg.Columns.Data]
	info.dataIsJSON = t == "json" || t == "jsonb"
	return info, fault.Permanent(errors.Join(problems...))
}

// ensurePublication checks that the publication exists and publishes the
// table's inserts and updates, creating it when allowed. Problems are
// permanent errors; failed queries are returned as they are.
func (s *Source) ensurePublication(ctx context.Context, conn *pgx.Conn) error {
	var ins, upd, all bool
	err := conn.QueryRow(ctx, "SELECT pubinsert, pubupdate, puballtables FROM pg_publication WHERE pubname = $1", s.cfg.Publication).Scan(&ins, &upd, &all)
	if errors.Is(err, pgx.ErrNoRows) {
		if !s.cfg.CreatePublication {
			return fault.Permanent(fmt.Errorf("publication %q does not exist and --pg.create-publication is false: CREATE PUBLICATION %s FOR TABLE %s", s.cfg.Publication, s.cfg.Publication, s.quotedTable()))
		}
		q := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert, update, delete')", pgx.Identifier{s.cfg.Publication}.Sanitize(), s.quotedTable())
		if _, err := conn.Exec(ctx, q); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42501" {
				return fmt.Errorf("create publication %q: %w (the role needs CREATE on the database and must own the table; or have an administrator run: %s)", s.cfg.Publication, err, q)
			}
			if !(errors.As(err, &pe) && pe.Code == "42710") { // 42710: created concurrently
				return fmt.Errorf("create publication %q: %w", s.cfg.Publication, err)
			}
		}
		s.log.Info("created publication", "publication", s.cfg.Publication, "table", s.schema+"."+s.table)
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up publication %q: %w", s.cfg.Publication, err)
	}
	var included bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
		s.cfg.Publication, s.schema, s.table).Scan(&included); err != nil {
		return fmt.Errorf("check publication %q: %w", s.cfg.Publication, err)
	}
	var problems []error
	if !included {
		problems = append(problems, fmt.Errorf("publication %q does not include table %s.%s: ALTER PUBLICATION %s ADD TABLE %s", s.cfg.Publication, s.schema, s.table, s.cfg.Publication, s.quotedTable()))
	}
	if !ins || !upd {
		problems = append(problems, fmt.Errorf("publication %q does not publish inserts and updates: ALTER PUBLICATION %s SET (publish = 'insert, update, delete')", s.cfg.Publication, s.cfg.Publication))
	}
	return fault.Permanent(errors.Join(problems...))
}

// slotInfo describes an existing replication slot.
type slotInfo struct {
	confirmed pglogrepl.LSN
}

// lookupSlot returns the slot, or nil when it does not exist; a slot of another
// kind, plugin or database is a permanent error.
func (s *Source) lookupSlot(ctx context.Context, conn *pgx.Conn) (*slotInfo, error) {
	var typ string
	var plugin, db, confirmed *string
	err := conn.QueryRow(ctx, `SELECT slot_type, plugin, database, confirmed_flush_lsn::text
		FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&typ, &plugin, &db, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up replication slot %q: %w", s.cfg.Slot, err)
	}
	var current string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&current); err != nil {
		return nil, fmt.Errorf("read the current database: %w", err)
	}
	switch {
	case typ != "logical":
		return nil, fault.Permanent(fmt.Errorf("replication slot %q is a %s slot, not a logical one: choose another --pg.slot", s.cfg.Slot, typ))
	case plugin == nil || *plugin != "pgoutput":
		return nil, fault.Permanent(fmt.Errorf("replication slot %q uses plugin %v, not pgoutput: choose another --pg.slot", s.cfg.Slot, deref(plugin)))
	case db == nil || *db != current:
		return nil, fault.Permanent(fmt.Errorf("replication slot %q belongs to database %q, not %q: choose another --pg.slot", s.cfg.Slot, deref(db), current))
	case confirmed == nil:
		return nil, fmt.Errorf("replication slot %q has no confirmed_flush_lsn (is it still being created?)", s.cfg.Slot)
	}
	lsn, err := pglogrepl.ParseLSN(*confirmed)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("replication slot %q: %w", s.cfg.Slot, err))
	}
	return &slotInfo{confirmed: lsn}, nil
}

// checkSenderTimeout refuses a --pg.status-interval longer than half of the
// wal_sender_timeout that rc, a replication connection, sees (the setting may
// differ per role, database or DSN options): while the pipeline is stalled,
// the status update every interval is all that keeps the walsender from
// ending the connection. A timeout of 0 (disabled) accepts any interval.
func (s *Source) checkSenderTimeout(ctx context.Context, rc *pgconn.PgConn) error {
	res, err := rc.Exec(ctx, "SHOW wal_sender_timeout").ReadAll()
	if err != nil {
		return classify(fmt.Errorf("read wal_sender_timeout: %w", err))
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return fmt.Errorf("read wal_sender_timeout: unexpected result")
	}
	shown := string(res[0].Rows[0][0])
	timeout, err := parseSetting(shown)
	if err != nil {
		return fault.Permanent(fmt.Errorf("read wal_sender_timeout: %w", err))
	}
	if timeout > 0 && s.cfg.StatusInterval > timeout/2 {
		return fault.Permanent(fmt.Errorf("--pg.status-interval %s is longer than half of the server's wal_sender_timeout %s (as tributary's replication connection sees it): "+
			"while the pipeline is stalled, the status update every interval is what keeps the walsender from ending the connection; "+
			"set --pg.status-interval to at most %s, or raise wal_sender_timeout (postgresql.conf, ALTER ROLE … SET, or options=-c wal_sender_timeout=… in --pg.dsn)",
			s.cfg.StatusInterval, shown, timeout/2))
	}
	return nil
}

// parseSetting reads a time setting as SHOW prints it ("60s", "1min",
// "500ms", "0"; a bare number is milliseconds).
func parseSetting(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '-' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("unreadable time setting %q", v)
	}
	units := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}
	u, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("unreadable time setting %q", v)
	}
	if n < 0 {
		n = 0
	}
	return time.Duration(n) * u, nil
}

func deref(p *string) string {
	if p == nil {
		return "NULL"
	}
	return *p
}

func (s *Source) quotedTable() string { return pgx.Identifier{s.schema, s.table}.Sanitize() }

// serverMajor reads the major version from a connection's server_version.
func serverMajor(conn *pgconn.PgConn) int {
	v := conn.ParameterStatus("server_version")
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		v = v[:end]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// DropReplication drops the source's replication slot, ending the walsender
// that holds it, so that the next start creates a new slot and, with
// --pg.snapshot, copies the table again: the recovery when the slot cannot
// continue (its publication was dropped, or the WAL it needs was removed).
// Rows written again collapse in ClickHouse onto the ones already there. It
// returns what it did; a slot that does not exist is not an error. The
// publication is left alone (the next start creates it when it is missing
// and --pg.create-publication allows).
func DropReplication(ctx context.Context, cfg Config) ([]string, error) {
	s, err := New(cfg, nil)
	if err != nil {
		return nil, err
	}
	conn, err := s.connectSQL(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var done []string
	var pid *int32
	err = conn.QueryRow(ctx, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", cfg.Slot).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return []string{fmt.Sprintf("replication slot %q does not exist", cfg.Slot)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up replication slot %q: %w", cfg.Slot, err)
	}
	if pid != nil {
		if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", *pid); err != nil {
			return nil, fmt.Errorf("end the walsender (pid %d) of slot %q: %w", *pid, cfg.Slot, err)
		}
		done = append(done, fmt.Sprintf("ended the walsender (pid %d) holding slot %q", *pid, cfg.Slot))
	}
	// A terminated walsender releases the slot a moment later.
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", cfg.Slot)
		var pe *pgconn.PgError
		if err == nil || !errors.As(err, &pe) || pe.Code != "55006" || attempt >= 50 {
			break
		}
		select {
		case <-ctx.Done():
			return done, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return done, fmt.Errorf("drop replication slot %q: %w", cfg.Slot, err)
	}
	return append(done, fmt.Sprintf("dropped replication slot %q", cfg.Slot)), nil
}
