package clickhouse

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/tributary-cdc/tributary/mapping"
)

// part says which piece of a logical value a physical column stores.
type part uint8

const (
	whole   part = iota // the value itself (converted where the dialect needs it)
	seconds             // a time's whole seconds (legacy DateTime)
	millis              // a time's milliseconds, 0–999 (legacy UInt16 twin)
)

// physCol is one column as it exists in ClickHouse.
type physCol struct {
	Name    string
	Type    string
	Comment string
	src     int // index of the logical column in a row
	part    part
	logical mapping.ColumnType
	Default string // a DEFAULT expression (only when a column is added to an existing table)
}

// MillisSuffix names the legacy twin column that keeps a time's milliseconds:
// a Time column `ts` is stored as `ts DateTime('UTC')` plus `ts_ms UInt16`.
const MillisSuffix = "_ms"

// columnsOf returns the physical columns of t in dialect d, in order.
func columnsOf(t mapping.Table, d Dialect) []physCol {
	out := make([]physCol, 0, len(t.Columns)+2)
	for i, c := range t.Columns {
		pc := physCol{Name: c.Name, Comment: c.Comment, src: i, logical: c.Type}
		switch c.Type {
		case mapping.String:
			pc.Type = "String"
		case mapping.LowString:
			pc.Type = pick(d, "LowCardinality(String)", "String")
		case mapping.Time:
			pc.Type = pick(d, "DateTime64(3, 'UTC')", "DateTime('UTC')")
		case mapping.UInt64:
			pc.Type = "UInt64"
		case mapping.UInt32:
			pc.Type = "UInt32"
		case mapping.Bool:
			pc.Type = "UInt8"
		case mapping.ArrayString:
			pc.Type = "Array(String)"
		case mapping.ArrayLowString:
			pc.Type = pick(d, "Array(LowCardinality(String))", "Array(String)")
		case mapping.NullableString:
			pc.Type = "Nullable(String)"
		case mapping.NullableTime:
			pc.Type = pick(d, "Nullable(DateTime64(3, 'UTC'))", "Nullable(DateTime('UTC'))")
		case mapping.Int64:
			pc.Type = "Int64"
		case mapping.NullableInt64:
			pc.Type = "Nullable(Int64)"
		default:
			pc.Type = fmt.Sprintf("Unknown%d", int(c.Type))
		}
		if d == Legacy && isTime(c.Type) {
			pc.part = seconds
			out = append(out, pc)
			out = append(out, physCol{
				Name:    c.Name + MillisSuffix,
				Type:    "UInt16",
				Comment: fmt.Sprintf("Milliseconds (0-999) of %s, which holds whole seconds: %s + %s ms is the exact time.", c.Name, c.Name, c.Name+MillisSuffix),
				src:     i,
				part:    millis,
				logical: c.Type,
			})
			continue
		}
		out = append(out, pc)
	}
	return out
}

func isTime(t mapping.ColumnType) bool { return t == mapping.Time || t == mapping.NullableTime }

func pick(d Dialect, modern, legacy string) string {
	if d == Legacy {
		return legacy
	}
	return modern
}

// quoteIdent returns name as a ClickHouse identifier, back-quoted unless it
// is a plain one.
func quoteIdent(name string) string {
	if identRE.MatchString(name) {
		return name
	}
	return "`" + strings.NewReplacer("\\", "\\\\", "`", "\\`").Replace(name) + "`"
}

// quoteString returns s as a ClickHouse string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer("\\", "\\\\", "'", "\\'", "\n", "\\n").Replace(s) + "'"
}

// orderBy renders t's sorting key; in Legacy a time column in the key is
// followed by its milliseconds twin, so that rows differing only in the
// milliseconds stay distinct.
func orderBy(t mapping.Table, d Dialect) string {
	kinds := map[string]mapping.ColumnType{}
	for _, c := range t.Columns {
		kinds[c.Name] = c.Type
	}
	keys := make([]string, 0, len(t.OrderBy)+1)
	for _, k := range t.OrderBy {
		typ, isCol := kinds[k]
		if !isCol {
			keys = append(keys, k) // an expression, kept as written
			continue
		}
		keys = append(keys, quoteIdent(k))
		if d == Legacy && typ == mapping.Time {
			keys = append(keys, quoteIdent(k+MillisSuffix))
		}
	}
	return "(" + strings.Join(keys, ", ") + ")"
}

// backfill returns the DEFAULT expression that fills column c of t in the
// rows of an existing table of dialect d, written before c was added: a
// *_unix_ms column is computed from its time column (whole seconds plus the
// _ms twin on legacy tables), other columns take t.Backfill's expression;
// "" when c has none (the type's default value then).
func backfill(c physCol, t mapping.Table, d Dialect) string {
	if c.part != whole {
		return ""
	}
	if base, ok := strings.CutSuffix(c.Name, mapping.UnixMillisSuffix); ok && c.logical == mapping.Int64 {
		for _, tc := range t.Columns {
			if tc.Name != base || tc.Type != mapping.Time {
				continue
			}
			if d == Legacy {
				return fmt.Sprintf("toInt64(%s) * 1000 + %s", quoteIdent(base), quoteIdent(base+MillisSuffix))
			}
			return fmt.Sprintf("toUnixTimestamp64Milli(%s)", quoteIdent(base))
		}
	}
	return t.Backfill[c.Name]
}

// withBackfill returns c with its backfill DEFAULT, for ALTER … ADD COLUMN.
func withBackfill(c physCol, t mapping.Table, d Dialect) physCol {
	c.Default = backfill(c, t, d)
	return c
}

func columnDef(c physCol) string { return columnDefIn(c, true) }

// columnDefIn is columnDef, without the comment when comments is false.
func columnDefIn(c physCol, comments bool) string {
	s := quoteIdent(c.Name) + " " + c.Type
	if c.Default != "" {
		s += " DEFAULT " + c.Default
	}
	if comments && c.Comment != "" {
		s += " COMMENT " + quoteString(c.Comment) // column comments exist on 18.16 too
	}
	return s
}

// renderTable returns the CREATE TABLE statement of t: on a cluster, ON
// CLUSTER with a replicated engine.
func renderTable(t mapping.Table, database string, d Dialect, c Cluster) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s%s\n(\n", quoteIdent(database), quoteIdent(t.Name), c.OnCluster())
	cols := columnsOf(t, d)
	comments := c.ColumnComments(d)
	for i, col := range cols {
		b.WriteString("    " + columnDefIn(col, comments))
		if i < len(cols)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, ")\nENGINE = %s\n", c.Engine(database, t.Name, quoteIdent(t.Version)))
	if t.PartitionBy != "" {
		fmt.Fprintf(&b, "PARTITION BY %s\n", t.PartitionBy)
	}
	fmt.Fprintf(&b, "ORDER BY %s", orderBy(t, d))
	if d == Modern && t.Comment != "" { // table comments need 21.6+
		fmt.Fprintf(&b, "\nCOMMENT %s", quoteString(t.Comment))
	}
	return b.String()
}

// renderView returns the CREATE VIEW statement of v. On a cluster the view
// reads the tables' Distributed tables, its joins are GLOBAL, and it is
// created ON CLUSTER, so that every node answers for the whole cluster. The
// query starts with a WITH clause naming its fingerprint (viewMarker): it
// adds no column, and the server keeps it in the definition it stores
// (system.tables create_table_query, 18.16 included), where Ensure looks
// for it.
func renderView(v mapping.View, database string, tables []mapping.Table, c Cluster) string {
	q := strings.NewReplacer("{db}", quoteIdent(database)).Replace(viewQuery(v, tables, c))
	return fmt.Sprintf("CREATE VIEW IF NOT EXISTS %s.%s%s AS\nWITH '%s' AS _tributary_definition\n%s",
		quoteIdent(database), quoteIdent(v.Name), c.OnCluster(), viewMarker(v, tables, c), q)
}

// viewQuery returns v's query for cluster c, before the database name is
// put in: on a cluster the tables' Distributed tables and GLOBAL joins.
func viewQuery(v mapping.View, tables []mapping.Table, c Cluster) string {
	q := strings.TrimSpace(v.Query)
	global := ""
	if c.Enabled() {
		global = "GLOBAL "
		pairs := make([]string, 0, 2*len(tables))
		for _, t := range tables {
			pairs = append(pairs, "{db}."+t.Name+" ", "{db}."+t.Name+DistributedSuffix+" ")
		}
		q = strings.NewReplacer(pairs...).Replace(q)
	}
	return strings.ReplaceAll(q, "{global}", global)
}

// viewMarker fingerprints v's definition as rendered for cluster c: its name
// and query (before the database name is put in, so a view's fingerprint is
// the same in every database; a move to a cluster changes it).
func viewMarker(v mapping.View, tables []mapping.Table, c Cluster) string {
	h := fnv.New64a()
	h.Write([]byte(v.Name + "\x00" + viewQuery(v, tables, c)))
	return fmt.Sprintf("tributary-view-%016x", h.Sum64())
}

// RenderDDL returns the statements that create database and every table and
// view of schema in dialect d on a single server, in the order they must
// run. Every statement is idempotent (IF NOT EXISTS) and carries no trailing
// semicolon.
func RenderDDL(schema mapping.Schema, database string, d Dialect) []string {
	return RenderClusterDDL(schema, database, d, Cluster{})
}

// RenderClusterDDL is RenderDDL on cluster c: every statement runs ON
// CLUSTER, tables are ReplicatedReplacingMergeTrees, each has a Distributed
// table named with DistributedSuffix (sharded by ShardingKey), and the views
// read the Distributed tables. With a zero c it is RenderDDL.
func RenderClusterDDL(schema mapping.Schema, database string, d Dialect, c Cluster) []string {
	out := []string{"CREATE DATABASE IF NOT EXISTS " + quoteIdent(database) + c.OnCluster()}
	for _, t := range schema.Tables {
		out = append(out, renderTable(t, database, d, c))
	}
	if c.Enabled() {
		for _, t := range schema.Tables {
			out = append(out, renderDistributed(t, database, c))
		}
	}
	for _, v := range schema.Views {
		out = append(out, renderView(v, database, schema.Tables, c))
	}
	return out
}
