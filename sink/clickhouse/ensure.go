package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/freelist"
	"github.com/tributary-cdc/tributary/mapping"
)

// tableWriter is what Write needs to know about one ensured table.
type tableWriter struct {
	name    string
	dialect Dialect
	cols    []physCol
	width   int                  // number of logical columns a row carries
	insert  string               // INSERT INTO db.t (c1, c2, …)
	bufs    []freelist.List[any] // per column: buffers of sent INSERTs (fastAppend, borrowFixed)
}

// newTableWriter returns the writer of t; into names the table INSERTs go
// to (t's own, or its Distributed table on a sharded cluster).
func newTableWriter(t mapping.Table, database string, d Dialect, into ...string) *tableWriter {
	target := t.Name
	if len(into) > 0 {
		target = into[0]
	}
	cols := columnsOf(t, d)
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = quoteIdent(c.Name)
	}
	return &tableWriter{
		name:    t.Name,
		dialect: d,
		cols:    cols,
		width:   len(t.Columns),
		insert:  fmt.Sprintf("INSERT INTO %s.%s (%s)", quoteIdent(database), quoteIdent(target), strings.Join(names, ", ")),
		bufs:    newBufLists(len(cols)),
	}
}

// keptBuffers is how many buffers each column keeps for the next INSERTs:
// enough for the default two concurrent writers and more.
const keptBuffers = 4

func newBufLists(n int) []freelist.List[any] {
	l := make([]freelist.List[any], n)
	for i := range l {
		l[i] = freelist.New[any](keptBuffers)
	}
	return l
}

// normType makes two spellings of one ClickHouse type compare equal.
func normType(t string) string { return strings.Join(strings.Fields(t), "") }

// existingColumns returns the columns of db.table (name → type) and the
// table's engine; an empty engine means the table does not exist.
func (s *Sink) existingColumns(ctx context.Context, table string) (map[string]string, string, error) {
	var engine string
	rows, err := s.conn.Query(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", s.cfg.Database, table)
	if err != nil {
		return nil, "", fmt.Errorf("look up table %s.%s: %w", s.cfg.Database, table, err)
	}
	for rows.Next() {
		if err := rows.Scan(&engine); err != nil {
			rows.Close()
			return nil, "", fmt.Errorf("look up table %s.%s: %w", s.cfg.Database, table, err)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("look up table %s.%s: %w", s.cfg.Database, table, err)
	}
	if engine == "" {
		return nil, "", nil
	}
	// system.columns has no `position` on 18.16; order does not matter here.
	rows, err = s.conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = ?", s.cfg.Database, table)
	if err != nil {
		return nil, "", fmt.Errorf("read columns of %s.%s: %w", s.cfg.Database, table, err)
	}
	defer rows.Close()
	cols := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, "", fmt.Errorf("read columns of %s.%s: %w", s.cfg.Database, table, err)
		}
		cols[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("read columns of %s.%s: %w", s.cfg.Database, table, err)
	}
	return cols, engine, nil
}

// tableDialect returns the dialect an existing table was created in: a
// table created as Legacy keeps its layout after the server is upgraded.
func (s *Sink) tableDialect(t mapping.Table, existing map[string]string) Dialect {
	if s.dialect == Legacy {
		return Legacy
	}
	for _, c := range t.Columns {
		if c.Type != mapping.Time {
			continue
		}
		if typ, ok := existing[c.Name]; ok && normType(typ) == normType("DateTime('UTC')") {
			return Legacy
		}
	}
	return Modern
}

func (s *Sink) exec(ctx context.Context, stmt string) error {
	if err := s.conn.Exec(ctx, stmt); err != nil {
		first, _, _ := strings.Cut(stmt, "\n")
		return fmt.Errorf("run %q: %w", first, err)
	}
	return nil
}

// Ensure connects to ClickHouse if the sink is not connected yet (one
// attempt), creates the database, tables and views of schema (unless
// CreateSchema is false) and checks existing tables: a missing column is
// added (with CreateSchema) and a column of another type is refused. It is
// idempotent, must run before Write, and classifies its failures like Write.
func (s *Sink) Ensure(ctx context.Context, schema mapping.Schema) error {
	if err := s.connect(ctx); err != nil {
		return err
	}
	if err := s.ensure(ctx, schema); err != nil {
		return classifyErr(err)
	}
	return nil
}

func (s *Sink) ensure(ctx context.Context, schema mapping.Schema) error {
	db := s.cfg.Database
	// Existence is checked first, so that a user without the privilege to
	// create (which IF NOT EXISTS still requires) can run on a prepared schema.
	var dbs uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.databases WHERE name = ?", db).Scan(&dbs); err != nil {
		return fmt.Errorf("ensure ClickHouse schema: look up database %s: %w", db, err)
	}
	if dbs == 0 {
		if !s.cfg.CreateSchema {
			return permanent("ensure ClickHouse schema: database %s does not exist and --clickhouse.create-schema=false", db)
		}
		if err := s.exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(db)+s.cluster.OnCluster()); err != nil {
			return fmt.Errorf("ensure ClickHouse schema: %w", err)
		}
	}
	writers := make(map[string]*tableWriter, len(schema.Tables))
	var problems []error
	for _, t := range schema.Tables {
		tw, err := s.ensureTable(ctx, t)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		writers[t.Name] = tw
	}
	if len(problems) > 0 {
		return classifyErr(fmt.Errorf("ensure ClickHouse schema in %s: %w", db, errors.Join(problems...)))
	}
	for _, v := range schema.Views {
		if err := s.ensureView(ctx, v, schema.Tables); err != nil {
			return fmt.Errorf("ensure ClickHouse schema: view %s.%s: %w", db, v.Name, err)
		}
	}
	s.mu.Lock()
	s.tables = writers
	s.mu.Unlock()
	s.log.Info("ClickHouse schema ready", "database", db, "tables", len(schema.Tables), "views", len(schema.Views), "cluster", s.cfg.Cluster)
	return nil
}

// ensureTable ensures t and, on a cluster, its Distributed table, and
// returns its writer: into the Distributed table on a cluster of several
// shards (which places each row by ShardingKey), into t itself otherwise
// (with one shard, any replica takes the INSERT and replication copies it).
func (s *Sink) ensureTable(ctx context.Context, t mapping.Table) (*tableWriter, error) {
	d, err := s.ensureLocal(ctx, t)
	if err != nil {
		return nil, err
	}
	if !s.cluster.Enabled() {
		return newTableWriter(t, s.cfg.Database, d), nil
	}
	if err := s.ensureDistributed(ctx, t, d); err != nil {
		return nil, err
	}
	if s.shape.Shards > 1 {
		return newTableWriter(t, s.cfg.Database, d, t.Name+DistributedSuffix), nil
	}
	return newTableWriter(t, s.cfg.Database, d), nil
}

// ensureDistributed creates t's Distributed table when it is missing and
// adds the columns it lacks.
func (s *Sink) ensureDistributed(ctx context.Context, t mapping.Table, d Dialect) error {
	db, name := s.cfg.Database, t.Name+DistributedSuffix
	existing, engine, err := s.existingColumns(ctx, name)
	if err != nil {
		return err
	}
	if engine == "" {
		if !s.cfg.CreateSchema {
			return permanent("table %s.%s does not exist and --clickhouse.create-schema=false: create it (tributary schema --cluster prints the DDL) or allow the sink to", db, name)
		}
		if err := s.exec(ctx, renderDistributed(t, db, s.cluster)); err != nil {
			return fmt.Errorf("create table %s.%s: %w", db, name, err)
		}
		s.log.Info("created table", "table", db+"."+name, "engine", "Distributed", "cluster", s.cfg.Cluster)
		return nil
	}
	if engine != "Distributed" {
		return permanent("%s.%s is a %s, not the Distributed table over %s.%s", db, name, engine, db, t.Name)
	}
	for _, c := range columnsOf(t, d) {
		if _, ok := existing[c.Name]; ok {
			continue
		}
		if !s.cfg.CreateSchema {
			return permanent("table %s.%s lacks column %s %s and --clickhouse.create-schema=false", db, name, c.Name, c.Type)
		}
		stmt := fmt.Sprintf("ALTER TABLE %s.%s%s ADD COLUMN %s %s", quoteIdent(db), quoteIdent(name), s.cluster.OnCluster(), quoteIdent(c.Name), c.Type)
		if err := s.exec(ctx, stmt); err != nil {
			return fmt.Errorf("add column %s to %s.%s: %w", c.Name, db, name, err)
		}
		s.log.Info("added column", "table", db+"."+name, "column", c.Name, "type", c.Type)
	}
	return nil
}

// ensureLocal ensures t itself and returns the dialect of its layout.
func (s *Sink) ensureLocal(ctx context.Context, t mapping.Table) (Dialect, error) {
	db := s.cfg.Database
	existing, engine, err := s.existingColumns(ctx, t.Name)
	if err != nil {
		return "", err
	}
	if engine == "" {
		if !s.cfg.CreateSchema {
			return "", permanent("table %s.%s does not exist and --clickhouse.create-schema=false: create it (tributary schema prints the DDL) or allow the sink to", db, t.Name)
		}
		if err := s.exec(ctx, renderTable(t, db, s.dialect, s.cluster)); err != nil {
			return "", fmt.Errorf("create table %s.%s: %w", db, t.Name, err)
		}
		s.log.Info("created table", "table", db+"."+t.Name, "dialect", string(s.dialect), "cluster", s.cfg.Cluster)
		return s.dialect, nil
	}
	if engine == "View" || engine == "MaterializedView" {
		return "", permanent("%s.%s is a %s, not a table", db, t.Name, engine)
	}
	if !strings.Contains(engine, "ReplacingMergeTree") {
		s.log.Warn("table is not a ReplacingMergeTree: replays may show duplicates", "table", db+"."+t.Name, "engine", engine)
	}
	if s.cluster.Enabled() && !strings.HasPrefix(engine, "Replicated") {
		s.log.Warn("table is not replicated although --clickhouse.cluster is set: the other replicas never see its rows (docs/clickhouse.md: moving to a cluster)",
			"table", db+"."+t.Name, "engine", engine)
	}
	d := s.tableDialect(t, existing)
	var mismatches []error
	var missing []physCol
	for _, c := range columnsOf(t, d) {
		actual, ok := existing[c.Name]
		switch {
		case !ok:
			missing = append(missing, c)
		case normType(actual) != normType(c.Type):
			mismatches = append(mismatches, fmt.Errorf("table %s.%s column %s has type %s, want %s: migrate or drop the table", db, t.Name, c.Name, actual, c.Type))
		}
	}
	if len(mismatches) > 0 {
		return "", fault.Permanent(errors.Join(mismatches...))
	}
	for _, c := range missing {
		if !s.cfg.CreateSchema {
			mismatches = append(mismatches, fmt.Errorf("table %s.%s lacks column %s %s and --clickhouse.create-schema=false", db, t.Name, c.Name, c.Type))
			continue
		}
		stmt := fmt.Sprintf("ALTER TABLE %s.%s%s ADD COLUMN %s", quoteIdent(db), quoteIdent(t.Name), s.cluster.OnCluster(), columnDefIn(withBackfill(c, t, d), s.cluster.ColumnComments(d)))
		if err := s.exec(ctx, stmt); err != nil {
			return "", fmt.Errorf("add column %s to %s.%s: %w", c.Name, db, t.Name, err)
		}
		s.log.Info("added column", "table", db+"."+t.Name, "column", c.Name, "type", c.Type)
	}
	if len(mismatches) > 0 {
		return "", fault.Permanent(errors.Join(mismatches...))
	}
	if d != s.dialect {
		s.log.Info("table keeps its legacy layout on a modern server", "table", db+"."+t.Name)
	}
	return d, nil
}

// ensureView creates view v, or replaces an existing view of that name
// whose definition is not v's (a newer release changed it). Views hold no
// data, so replacing one loses nothing. Every view tributary creates carries
// the fingerprint of its definition (viewMarker) in the query the server
// stores, so one read of system.tables tells whether it is up to date.
// Without CreateSchema a missing or outdated view is only reported.
func (s *Sink) ensureView(ctx context.Context, v mapping.View, tables []mapping.Table) error {
	db := s.cfg.Database
	_, engine, err := s.existingColumns(ctx, v.Name)
	if err != nil {
		return err
	}
	if engine == "" {
		if !s.cfg.CreateSchema {
			s.log.Warn("view is missing and --clickhouse.create-schema=false", "view", db+"."+v.Name)
			return nil
		}
		return s.exec(ctx, renderView(v, db, tables, s.cluster))
	}
	if engine != "View" {
		return permanent("%s.%s is a %s, not a view", db, v.Name, engine)
	}
	current, err := s.createQuery(ctx, v.Name)
	if err != nil {
		return err
	}
	if strings.Contains(current, viewMarker(v, tables, s.cluster)) {
		return nil
	}
	if !s.cfg.CreateSchema {
		s.log.Warn("view has another definition than this release's and --clickhouse.create-schema=false: kept as it is", "view", db+"."+v.Name)
		return nil
	}
	if err := s.exec(ctx, fmt.Sprintf("DROP TABLE IF EXISTS %s.%s%s", quoteIdent(db), quoteIdent(v.Name), s.cluster.OnCluster())); err != nil {
		return err
	}
	if err := s.exec(ctx, renderView(v, db, tables, s.cluster)); err != nil {
		return err
	}
	s.log.Info("replaced a view whose definition changed", "view", db+"."+v.Name)
	return nil
}

// createQuery returns the CREATE statement the server stores for db.name.
func (s *Sink) createQuery(ctx context.Context, name string) (string, error) {
	var q string
	err := s.conn.QueryRow(ctx, "SELECT create_table_query FROM system.tables WHERE database = ? AND name = ?", s.cfg.Database, name).Scan(&q)
	if err != nil {
		return "", fmt.Errorf("read the definition of %s.%s: %w", s.cfg.Database, name, err)
	}
	return q, nil
}
