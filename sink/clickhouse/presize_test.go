package clickhouse

import (
	"reflect"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

// TestPresizeReachesTheBuffer pins presizeStrings to the clickhouse-go in
// go.mod: a String column's buffers get the capacity for the values, and
// appending them afterwards neither reallocates nor changes what is encoded.
func TestPresizeReachesTheBuffer(t *testing.T) {
	values := []string{"alpha", "", "gamma-delta", "ε"}
	col, err := column.Type("String").Column("s", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !presizeStrings(col, values) {
		t.Fatal("presizeStrings did not reach the String column's buffer: clickhouse-go's layout changed (see presize.go)")
	}
	buf := reflect.ValueOf(col).Elem().FieldByName("col").FieldByName("Buf")
	if buf.Cap() < len("alphagamma-deltaε") {
		t.Fatalf("capacity %d after presizing, want room for every value's bytes", buf.Cap())
	}
	array := buf.Pointer()
	var before proto.Buffer
	col.Encode(&before)
	if col.Rows() != 0 {
		t.Fatalf("presizing added %d rows", col.Rows())
	}
	plain, err := column.Type("String").Column("s", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []column.Interface{col, plain} {
		if _, err := c.Append(values); err != nil {
			t.Fatal(err)
		}
	}
	var got, want proto.Buffer
	col.Encode(&got)
	plain.Encode(&want)
	if string(got.Buf) != string(want.Buf) || col.Rows() != len(values) {
		t.Fatalf("presized column encodes %q (%d rows), plain %q", got.Buf, col.Rows(), want.Buf)
	}
	if buf.Pointer() != array {
		t.Error("appending the presized values reallocated the buffer")
	}
	if presizeStrings(nil, values) {
		t.Error("presizeStrings accepted a nil column")
	}
	other, err := column.Type("UInt64").Column("u", nil)
	if err != nil {
		t.Fatal(err)
	}
	if presizeStrings(other, values) {
		t.Error("presizeStrings claimed a UInt64 column")
	}
}
