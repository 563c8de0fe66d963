package clickhouse

import (
	"reflect"
	"slices"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

// presizeStrings gives a String column of a prepared batch the capacity for
// values before they are appended. clickhouse-go appends a []string value by
// value into buffers that start empty in every INSERT, so without this each
// buffer is reallocated and copied some forty times on the way to its size:
// for a batch of 10,000 events that was the largest allocation of the whole
// process, and the garbage collector's main work.
//
// clickhouse-go has no API for it: the column's buffer (a ch-go proto.ColStr
// in an unexported field) is reached through reflection, and only when it is
// exactly that; any other shape (another clickhouse-go version) is left
// alone and the append merely costs more. TestPresizeReachesTheBuffer fails
// if an upgrade changes the shape, so the loss cannot go unnoticed.
func presizeStrings(c column.Interface, values []string) bool {
	sc, ok := c.(*column.String)
	if !ok || sc == nil {
		return false
	}
	f := reflect.ValueOf(sc).Elem().FieldByName("col")
	if !f.IsValid() || f.Type() != reflect.TypeFor[proto.ColStr]() || !f.CanAddr() {
		return false
	}
	buf := (*proto.ColStr)(unsafe.Pointer(f.UnsafeAddr()))
	n := 0
	for _, v := range values {
		n += len(v)
	}
	buf.Buf = slices.Grow(buf.Buf, n)
	buf.Pos = slices.Grow(buf.Pos, len(values))
	return true
}
