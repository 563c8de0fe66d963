// Package mapping turns events into rows of analyst-friendly tables. It is
// pure: no I/O, no clock reads except where a function says so.
package mapping

// ColumnType is a logical column type; each sink dialect renders it (for
// ClickHouse: modern types on 23.x+, lossless equivalents on 18.x).
type ColumnType int

// Logical column types and the Go value each row carries for them.
const (
	String         ColumnType = iota // string
	LowString                        // string with few distinct values (type names, tenants)
	Time                             // time.Time, UTC, millisecond precision
	UInt64                           // uint64
	UInt32                           // uint32
	Bool                             // bool
	ArrayString                      // []string
	ArrayLowString                   // []string with few distinct values (statuses)
	NullableString                   // *string
	NullableTime                     // *time.Time, millisecond precision
	Int64                            // int64 (epoch milliseconds of a time: the *_unix_ms columns)
	NullableInt64                    // *int64
)

// Column is one column of a table.
type Column struct {
	Name    string
	Type    ColumnType
	Comment string // what the column holds, for analysts
}

// Table describes one table: a ReplacingMergeTree whose sorting key ends in
// the columns that identify a row, so that a replayed row collapses onto itself.
type Table struct {
	Name        string
	Comment     string
	Columns     []Column
	OrderBy     []string // the sorting key, which is also the deduplication key
	PartitionBy string   // a partition expression such as "toYYYYMM(timestamp)", or ""
	Version     string   // the version column of ReplacingMergeTree
	// Backfill gives, by column name, the SQL expression (over the table's
	// other logical columns, valid on every dialect) that fills the column
	// in rows written before it existed, when a sink adds it to an existing
	// table. A *_unix_ms column (UnixMillisSuffix) needs none: the sink
	// derives it from its time column.
	Backfill map[string]string
}

// UnixMillisSuffix ends the name of the Int64 column that holds a time
// column's epoch milliseconds: `timestamp_unix_ms` is `timestamp` as
// milliseconds since 1970-01-01 UTC, exact on every server, so that one SQL
// text orders and subtracts times exactly on every dialect.
const UnixMillisSuffix = "_unix_ms"

// View is a view over the tables. Query is a SELECT in SQL that both ClickHouse
// 18.16 and current versions accept; "{db}" stands for the database name,
// "{db}.table" names a table of the schema (on a cluster, the sink reads its
// Distributed table instead) and "{global}" stands before a JOIN whose right
// side reads a table (GLOBAL on a cluster, so that each shard joins every
// shard's rows; nothing on a single server).
type View struct {
	Name    string
	Comment string
	Query   string
}

// Schema is every table and view the pipeline writes and creates.
type Schema struct {
	Tables []Table
	Views  []View
}
