package clickhouse

import (
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/tributary-cdc/tributary/mapping"
)

// TestColumnsFitDriverTypes checks, for both dialects, that every column the
// sink builds from mapped rows is accepted by clickhouse-go's own column of
// the type the DDL declares. The test server is 18.16, so this is what proves
// the modern encoding (DateTime64, LowCardinality) short of a modern server.
func TestColumnsFitDriverTypes(t *testing.T) {
	rows := mapping.NewRows()
	opts := mapping.Options{Pipeline: "t", IngestedAt: time.Date(2026, 1, 1, 0, 0, 0, 1e6, time.UTC)}
	mapping.Map(sampleBatch(40), opts, rows)
	mapping.Map(rejectBatch(), opts, rows)
	schema := mapping.DefaultSchema()
	schema.Tables = append(schema.Tables, testSchema().Tables...)
	for i := range 40 {
		appendRow(rows, testSchema().Tables[0], testRow(i, time.Date(2026, 1, 1, 0, 0, i, 7e6, time.UTC)))
	}
	sc := &column.ServerContext{Revision: 54460, VersionMajor: 24, VersionMinor: 8, Timezone: time.UTC}
	for _, d := range []Dialect{Modern, Legacy} {
		for _, tbl := range schema.Tables {
			in := rows.ByTable[tbl.Name]
			if in.Len() == 0 {
				t.Fatalf("no mapped rows for table %s", tbl.Name)
			}
			tw := newTableWriter(tbl, "db", d)
			cols, err := tw.toColumns(in)
			if err != nil {
				t.Fatalf("%s %s: toColumns: %v", d, tbl.Name, err)
			}
			for i, pc := range tw.cols {
				dc, err := column.Type(pc.Type).Column(pc.Name, sc)
				if err != nil {
					t.Fatalf("%s %s.%s: driver column of type %s: %v", d, tbl.Name, pc.Name, pc.Type, err)
				}
				if _, err := dc.Append(cols[i]); err != nil {
					t.Errorf("%s %s.%s (%s): driver refused %T: %v", d, tbl.Name, pc.Name, pc.Type, cols[i], err)
					continue
				}
				if got, want := dc.Rows(), in.Len(); got != want {
					t.Errorf("%s %s.%s: driver column holds %d rows, want %d", d, tbl.Name, pc.Name, got, want)
				}
			}
		}
	}
}
