package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DataColumns lists the columns of db.table that carry data, leaving out the
// bookkeeping columns whose names start with "_" (_source, _position,
// _version, _ingested_at).
func DataColumns(t testing.TB, conn driver.Conn, db, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT name FROM system.columns WHERE database = ? AND table = ? ORDER BY name", db, table)
	if err != nil {
		t.Fatalf("columns of %s.%s: %v", db, table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(n, "_") {
			cols = append(cols, n)
		}
	}
	if len(cols) == 0 {
		t.Fatalf("%s.%s has no data columns", db, table)
	}
	return cols
}

// Fingerprint is a table's deduplicated row count and an order-independent
// checksum of the chosen columns of every row.
type Fingerprint struct{ Rows, Sum uint64 }

// TableFingerprint reads the Fingerprint of cols in db.table, deduplicated
// with FINAL. The checksum is the sum, over groups of at most 12 columns, of
// each group's sum of row hashes: one query over every column of a wide
// table (the events table has some fifty) needs more than the 4 GB a query
// may use on 18.16 at 200,000 rows.
func TableFingerprint(t testing.TB, conn driver.Conn, db, table string, cols []string) Fingerprint {
	t.Helper()
	// cityHash64 is NULL when one argument is: a nullable column is hashed
	// as whether it is NULL and its value (the type's default when NULL).
	nullable := map[string]bool{}
	rows, err := conn.Query(context.Background(), "SELECT name FROM system.columns WHERE database = ? AND table = ? AND type LIKE 'Nullable(%'", db, table)
	if err != nil {
		t.Fatalf("columns of %s.%s: %v", db, table, err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		nullable[n] = true
	}
	rows.Close()
	args := make([]string, len(cols))
	for i, c := range cols {
		args[i] = c
		if nullable[c] {
			args[i] = fmt.Sprintf("isNull(%[1]s), assumeNotNull(%[1]s)", c)
		}
	}
	var f Fingerprint
	for from := 0; from < len(args); from += 12 {
		var n, sum uint64
		q := fmt.Sprintf("SELECT count(), sum(cityHash64(%s)) FROM %s.%s FINAL", strings.Join(args[from:min(from+12, len(args))], ", "), db, table)
		if err := conn.QueryRow(context.Background(), q).Scan(&n, &sum); err != nil {
			t.Fatalf("fingerprint of %s.%s: %v", db, table, err)
		}
		f.Rows = n
		f.Sum += sum
	}
	return f
}

// AssertSameTables fails the test unless each table holds the same rows (data
// columns, after deduplication) in both databases, naming the columns that
// differ; an empty table counts as a failure, since it proves nothing.
func AssertSameTables(t testing.TB, conn driver.Conn, gotDB, wantDB string, tables []string) {
	t.Helper()
	for _, tbl := range tables {
		cols := DataColumns(t, conn, wantDB, tbl)
		got := TableFingerprint(t, conn, gotDB, tbl, cols)
		want := TableFingerprint(t, conn, wantDB, tbl, cols)
		switch {
		case got != want:
			t.Errorf("table %s: got %d rows (checksum %d), want %d rows (checksum %d)", tbl, got.Rows, got.Sum, want.Rows, want.Sum)
			for _, c := range cols {
				if g, w := TableFingerprint(t, conn, gotDB, tbl, []string{c}), TableFingerprint(t, conn, wantDB, tbl, []string{c}); g != w {
					t.Errorf("table %s: column %s differs", tbl, c)
				}
			}
		case got.Rows == 0 && tbl == "events":
			t.Errorf("table %s is empty in both databases", tbl)
		default:
			t.Logf("table %s: %d rows, identical", tbl, got.Rows)
		}
	}
}

// CountEvents returns the deduplicated number of rows of db.events.
func CountEvents(ctx context.Context, conn driver.Conn, db string) (uint64, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".events FINAL").Scan(&n)
	return n, err
}

// WaitEvents polls until db.events holds at least want events; it fails the
// test after timeout, or at once when alive (if not nil) returns an error.
func WaitEvents(t testing.TB, conn driver.Conn, db string, want uint64, timeout time.Duration, alive func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var n uint64
	for time.Now().Before(deadline) {
		var err error
		n, err = CountEvents(context.Background(), conn, db)
		if err == nil && n >= want {
			return
		}
		if alive != nil {
			if err := alive(); err != nil {
				t.Fatalf("waiting for %d events (have %d): %v", want, n, err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %d events in %s (have %d)", timeout, want, db, n)
}
