package testenv_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
)

// TestSmokeClickHouse proves the ClickHouse half of the test bed, on every
// server: a ReplacingMergeTree table, a 10,000-row batch insert over the
// native protocol with an explicit column list, and the FINAL count and
// checksum read back.
func TestSmokeClickHouse(t *testing.T) {
	testenv.ForEachClickHouse(t, smokeClickHouse)
}

func smokeClickHouse(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, 2*time.Minute)
	ddl := `CREATE TABLE smoke (id UInt64, name String, ts DateTime('UTC'), version UInt64)
		ENGINE = ReplacingMergeTree(version) ORDER BY id`
	if err := ch.Conn.Exec(ctx, ddl); err != nil {
		t.Fatalf("create table: %v", err)
	}
	const n = 10000
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	insert := func(version uint64) {
		t.Helper()
		batch, err := ch.Conn.PrepareBatch(ctx, "INSERT INTO smoke (id, name, ts, version)")
		if err != nil {
			t.Fatalf("prepare batch: %v", err)
		}
		for i := uint64(1); i <= n; i++ {
			if err := batch.Append(i, fmt.Sprintf("row-%d", i), base.Add(time.Duration(i)*time.Second), version); err != nil {
				t.Fatalf("append row %d: %v", i, err)
			}
		}
		if err := batch.Send(); err != nil {
			t.Fatalf("send batch: %v", err)
		}
	}
	insert(1)
	insert(2) // the same keys again: FINAL must collapse them

	var count, sum uint64
	row := ch.Conn.QueryRow(ctx, "SELECT count(), sum(id) FROM smoke FINAL")
	if err := row.Scan(&count, &sum); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if got, want := count, uint64(n); got != want {
		t.Errorf("FINAL count = %d, want %d", got, want)
	}
	if got, want := sum, uint64(n*(n+1)/2); got != want {
		t.Errorf("FINAL sum(id) = %d, want %d", got, want)
	}
	var names uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT sum(cityHash64(name)) FROM smoke FINAL WHERE version = 2").Scan(&names); err != nil {
		t.Fatalf("checksum: %v", err)
	}
	var want uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT sum(cityHash64(concat('row-', toString(number + 1)))) FROM (SELECT number FROM system.numbers LIMIT 10000)").Scan(&want); err != nil {
		t.Fatalf("expected checksum: %v", err)
	}
	if names != want {
		t.Errorf("checksum of names = %d, want %d", names, want)
	}
}
