package clickhouse

import (
	"reflect"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
)

// BenchmarkInsertEvents writes 100,000 mapped events rows through the sink
// and, in the same iteration, the same rows through a bare clickhouse-go
// PrepareBatch with row-wise Append of values already in the table's
// physical layout (no conversion), so the overhead ratio is visible:
//
//	make bench BENCH=BenchmarkInsertEvents
func BenchmarkInsertEvents(b *testing.B) {
	testenv.ForEachClickHouse(b, benchmarkInsertEvents)
}

func benchmarkInsertEvents(b *testing.B, ch *testenv.ClickHouseServer) {
	const n = 100_000
	s := newTestSink(b, ch, func(c *Config) { c.WriteTimeout = 5 * time.Minute })
	ctx := testenv.Context(b, 30*time.Minute)
	if err := s.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		b.Fatal(err)
	}
	all := mapping.NewRows()
	mapping.Map(sampleBatch(n), mapping.Options{Pipeline: "bench", IngestedAt: time.Now()}, all)
	events := all.ByTable[mapping.TableEvents]
	if events.Len() != n {
		b.Fatalf("mapped %d events rows, want %d", events.Len(), n)
	}
	rows := &mapping.Rows{ByTable: map[string]*mapping.TableRows{mapping.TableEvents: events}}

	// The raw baseline's rows: the same values, converted beforehand.
	tw := s.tables[mapping.TableEvents]
	cols, err := tw.toColumns(events)
	if err != nil {
		b.Fatal(err)
	}
	raw := make([][]any, n)
	for i := range raw {
		raw[i] = make([]any, len(cols))
		for c, col := range cols {
			raw[i][c] = indexColumn(col, i)
		}
	}

	var sinkTime, rawTime time.Duration
	for b.Loop() {
		start := time.Now()
		if err := s.Write(ctx, rows); err != nil {
			b.Fatal(err)
		}
		sinkTime += time.Since(start)

		start = time.Now()
		batch, err := s.conn.PrepareBatch(ctx, tw.insert)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range raw {
			if err := batch.Append(r...); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Send(); err != nil {
			b.Fatal(err)
		}
		rawTime += time.Since(start)
	}
	iters := float64(s.Stats().Inserts)
	b.ReportMetric(n*iters/sinkTime.Seconds(), "sink_rows/s")
	b.ReportMetric(n*iters/rawTime.Seconds(), "raw_rows/s")
	b.ReportMetric(sinkTime.Seconds()/rawTime.Seconds(), "sink/raw_time")
}

// indexColumn returns element i of a typed column slice made by toColumns
// (whatever its element type: the schema grows new ones).
func indexColumn(col any, i int) any {
	return reflect.ValueOf(col).Index(i).Interface()
}
