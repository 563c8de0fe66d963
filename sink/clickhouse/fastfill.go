package clickhouse

import (
	"reflect"
	"slices"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/tributary-cdc/tributary/internal/freelist"
)

// fastAppend appends a whole column of values to a prepared batch's column
// c the way clickhouse-go's own Append would, but without its per-value
// reflection and boxing: String columns get their values straight into
// ch-go's buffer (sized once), LowCardinality(String) columns keep their
// dictionary in a map of strings instead of a map of interfaces, and
// Array(String) / Array(LowCardinality(String)) columns do both for their
// elements and append their offsets in one go. Those were, by the CPU
// profile, most of what an INSERT cost tributary (docs/benchmarks.md).
//
// clickhouse-go has no API for this: the columns' buffers sit in
// unexported fields, reached through reflection and used only when each has
// exactly the expected type. For any other column, value type or shape
// (another clickhouse-go version, a column that already holds rows) it
// returns false and the caller appends through the driver, which is always
// correct, only slower. TestFastAppendMatchesDriver encodes columns both ways
// and requires the same bytes, and fails if an upgrade changes the shape.
//
// A String column takes its buffers from pool (when not nil), and a
// LowCardinality column its keys, and records them in kept, for
// keep.release to return them once the INSERT is sent.
func fastAppend(c column.Interface, v any, pool *freelist.List[any], kept *keep) bool {
	switch c := c.(type) {
	case *column.String:
		vals, ok := v.([]string)
		if !ok {
			return false
		}
		buf := strBuf(c)
		if buf == nil || len(buf.Pos) != 0 {
			return false
		}
		if pool != nil && kept != nil && cap(buf.Buf) == 0 && cap(buf.Pos) == 0 {
			if b, ok := take[*proto.ColStr](pool); ok {
				buf.Buf, buf.Pos = b.Buf[:0], b.Pos[:0]
			}
			kept.lend(func() {
				b := &proto.ColStr{Buf: buf.Buf[:0], Pos: buf.Pos[:0]}
				buf.Buf, buf.Pos = nil, nil
				pool.Put(b)
			})
		}
		appendStrings(buf, vals)
		return true
	case *column.LowCardinality:
		vals, ok := v.([]string)
		if !ok {
			return false
		}
		lc, ok := lowCardOf(c)
		if !ok {
			return false
		}
		if pool != nil && kept != nil && cap(*lc.keys) == 0 {
			if b, ok := take[[]int](pool); ok {
				*lc.keys = b[:0]
			}
		}
		*lc.keys = slices.Grow(*lc.keys, len(vals))
		for _, s := range vals {
			lc.add(s)
		}
		if pool != nil && kept != nil {
			// Encode copies the keys into a narrower column and drops
			// the slice, so it is given back as it is now, not read
			// from the column at release.
			keys := *lc.keys
			kept.lend(func() { pool.Put(keys[:0]) })
		}
		return true
	case *column.Array:
		lists, ok := v.([][]string)
		if !ok {
			return false
		}
		return appendLists(c, lists)
	}
	return false
}

// keep lists what an INSERT borrowed from its columns' free lists (the
// tableWriter's bufs: a String column's buffers, a fixed-width column's
// data, a LowCardinality column's keys), as the functions that give each
// back. A batch's string buffers are the sink's largest allocations (several
// MiB for the data column), and the others add up; so they are reused by
// the next INSERT of the same column instead of being left to the collector.
type keep struct {
	give []func()
}

func (k *keep) lend(give func()) { k.give = append(k.give, give) }

// release takes the buffers back from the columns (which must not be used
// again: the batch is sent or abandoned) and returns them to their lists.
func (k *keep) release() {
	for _, f := range k.give {
		f()
	}
	k.give = k.give[:0]
}

// take returns a buffer of type B kept in pool, if it holds one.
func take[B any](pool *freelist.List[any]) (B, bool) {
	v, ok := pool.Get()
	b, isB := v.(B)
	return b, ok && isB
}

// borrowFixed gives a fresh fixed-width column (times, integers) a buffer
// kept from an earlier INSERT of the same column, before the driver
// appends to it; any other column is left alone.
func borrowFixed(c column.Interface, pool *freelist.List[any], kept *keep) {
	switch c := c.(type) {
	case *column.DateTime64:
		if p := fieldPtr[proto.ColDateTime64](c, "col"); p != nil {
			borrowSlice(&p.Data, pool, kept)
		}
	case *column.DateTime:
		if p := fieldPtr[proto.ColDateTime](c, "col"); p != nil {
			borrowSlice(&p.Data, pool, kept)
		}
	case *column.Int64:
		borrowCol[proto.ColInt64](c, pool, kept)
	case *column.UInt8:
		borrowCol[proto.ColUInt8](c, pool, kept)
	case *column.UInt16:
		borrowCol[proto.ColUInt16](c, pool, kept)
	case *column.UInt32:
		borrowCol[proto.ColUInt32](c, pool, kept)
	case *column.UInt64:
		borrowCol[proto.ColUInt64](c, pool, kept)
	}
}

// borrowCol is borrowSlice for a column whose ch-go buffer (field col) is
// a plain slice type C.
func borrowCol[C ~[]T, T any](c column.Interface, pool *freelist.List[any], kept *keep) {
	if p := fieldPtr[C](c, "col"); p != nil {
		borrowSlice(p, pool, kept)
	}
}

// borrowSlice sets the empty slice *dst to one kept in pool, if any, and
// records in kept that *dst goes back to pool once the INSERT is done. A
// slice that already holds something is left alone.
func borrowSlice[S ~[]T, T any](dst *S, pool *freelist.List[any], kept *keep) {
	if cap(*dst) != 0 {
		return
	}
	if b, ok := take[S](pool); ok {
		*dst = b[:0]
	}
	kept.lend(func() {
		b := (*dst)[:0]
		*dst = nil
		if cap(b) > 0 {
			pool.Put(b)
		}
	})
}

// appendStrings appends vals to buf, growing it once.
func appendStrings(buf *proto.ColStr, vals []string) {
	n := 0
	for _, s := range vals {
		n += len(s)
	}
	buf.Buf = slices.Grow(buf.Buf, n)
	buf.Pos = slices.Grow(buf.Pos, len(vals))
	for _, s := range vals {
		buf.Append(s)
	}
}

// appendLists appends rows of string lists to an empty Array(String) or
// Array(LowCardinality(String)) column.
func appendLists(c *column.Array, lists [][]string) bool {
	cv := fieldOf(c, "depth")
	if !cv.IsValid() || cv.Kind() != reflect.Int || cv.Int() != 1 {
		return false
	}
	offs := offsetsOf(c)
	if offs == nil || len(*offs) != 0 {
		return false
	}
	values, ok := columnField(c, "values")
	if !ok || values.Rows() != 0 {
		return false
	}
	total := 0
	for _, l := range lists {
		total += len(l)
	}
	switch values := values.(type) {
	case *column.String:
		buf := strBuf(values)
		if buf == nil {
			return false
		}
		buf.Pos = slices.Grow(buf.Pos, total)
		for _, l := range lists {
			for _, s := range l {
				buf.Append(s)
			}
		}
	case *column.LowCardinality:
		lc, ok := lowCardOf(values)
		if !ok {
			return false
		}
		*lc.keys = slices.Grow(*lc.keys, total)
		for _, l := range lists {
			for _, s := range l {
				lc.add(s)
			}
		}
	default:
		return false
	}
	*offs = slices.Grow(*offs, len(lists))
	var end uint64
	for _, l := range lists {
		end += uint64(len(l))
		*offs = append(*offs, end)
	}
	return true
}

// fieldOf returns the (unexported) field name of the struct *p points to,
// readable and settable, or an invalid Value.
func fieldOf(p any, name string) reflect.Value {
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}
	}
	f := v.Elem().FieldByName(name)
	if !f.IsValid() || !f.CanAddr() {
		return reflect.Value{}
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

// columnField returns the column.Interface held in field name of *p; false
// when there is no such field (another clickhouse-go layout) or it is nil.
func columnField(p any, name string) (column.Interface, bool) {
	f := fieldOf(p, name)
	if !f.IsValid() || !f.CanInterface() {
		return nil, false
	}
	c, ok := f.Interface().(column.Interface)
	return c, ok && c != nil
}

// fieldPtr returns a pointer to field name of *p when it has type T.
func fieldPtr[T any](p any, name string) *T {
	f := fieldOf(p, name)
	if !f.IsValid() || f.Type() != reflect.TypeFor[T]() {
		return nil
	}
	return (*T)(unsafe.Pointer(f.UnsafeAddr()))
}

// strBuf returns a String column's ch-go buffer.
func strBuf(c *column.String) *proto.ColStr { return fieldPtr[proto.ColStr](c, "col") }

// offsetsOf returns the ch-go buffer of a one-level Array's offsets (a
// column.UInt64).
func offsetsOf(c *column.Array) *proto.ColUInt64 {
	offs := fieldOf(c, "offsets")
	if !offs.IsValid() || offs.Kind() != reflect.Slice || offs.Len() != 1 {
		return nil
	}
	first := offs.Index(0)
	if first.Kind() != reflect.Pointer || first.IsNil() {
		return nil
	}
	vals := first.Elem().FieldByName("values")
	if !vals.IsValid() || vals.Type() != reflect.TypeFor[column.UInt64]() || !vals.CanAddr() {
		return nil
	}
	u := (*column.UInt64)(unsafe.Pointer(vals.UnsafeAddr()))
	return fieldPtr[proto.ColUInt64](u, "col")
}

// lowCard is a LowCardinality(String) column's innards: clickhouse-go keeps
// the row count, the dictionary column (index), one dictionary position per
// row (keys) and a map from value to position, which its Encode reads only
// for its size.
type lowCard struct {
	rows  *int
	index *column.String
	buf   *proto.ColStr
	keys  *[]int
	dict  *map[any]int
	pos   map[string]int
	// the value of the previous row and its position
	last    string
	lastPos int
	hasLast bool
}

func lowCardOf(c *column.LowCardinality) (*lowCard, bool) {
	lc := &lowCard{rows: fieldPtr[int](c, "rows")}
	ic, _ := columnField(c, "index")
	idx, _ := ic.(*column.String)
	nullable := fieldPtr[bool](c, "nullable")
	app := fieldOf(c, "append")
	if lc.rows == nil || idx == nil || nullable == nil || *nullable || !app.IsValid() || app.Kind() != reflect.Struct {
		return nil, false
	}
	lc.index, lc.buf = idx, strBuf(idx)
	keys, dict := app.FieldByName("keys"), app.FieldByName("index")
	if lc.buf == nil || !keys.IsValid() || keys.Type() != reflect.TypeFor[[]int]() ||
		!dict.IsValid() || dict.Type() != reflect.TypeFor[map[any]int]() {
		return nil, false
	}
	lc.keys = (*[]int)(unsafe.Pointer(keys.UnsafeAddr()))
	lc.dict = (*map[any]int)(unsafe.Pointer(dict.UnsafeAddr()))
	if *lc.rows != 0 || len(*lc.keys) != 0 || (*lc.dict != nil && len(*lc.dict) != 0) || idx.Rows() != 0 {
		return nil, false // not a fresh column: leave it to the driver
	}
	return lc, true
}

// begin sets the column up as clickhouse-go's first AppendRow does: the
// dictionary starts with the default value.
func (lc *lowCard) begin() {
	if lc.pos != nil {
		return
	}
	if *lc.dict == nil {
		*lc.dict = map[any]int{}
	}
	_ = lc.index.AppendRow(nil)
	lc.pos = map[string]int{}
}

// add appends one row's value. Consecutive rows often repeat a value
// (the tenant, the flavor, a batch of one event type), so the last one is
// compared before the dictionary is hashed.
func (lc *lowCard) add(s string) {
	lc.begin()
	*lc.rows++
	if lc.hasLast && s == lc.last {
		*lc.keys = append(*lc.keys, lc.lastPos)
		return
	}
	p, ok := lc.pos[s]
	if !ok {
		lc.buf.Append(s)
		p = len(lc.buf.Pos) - 1
		lc.pos[s] = p
		(*lc.dict)[s] = p
	}
	lc.last, lc.lastPos, lc.hasLast = s, p, true
	*lc.keys = append(*lc.keys, p)
}
