package clickhouse

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

// TestFastAppendMatchesDriver fills each column type the sink's fast path
// handles both ways — clickhouse-go's Append and fastAppend — and requires
// the same rows and the same encoded bytes. It also fails when fastAppend
// no longer reaches a column (a clickhouse-go upgrade changed its layout),
// so the lost speed cannot go unnoticed.
func TestFastAppendMatchesDriver(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	word := func(distinct int) string {
		switch n := rng.IntN(distinct + 2); n {
		case 0:
			return ""
		case 1:
			return "ε-ünïcode-" + fmt.Sprint(rng.IntN(3))
		default:
			return fmt.Sprintf("value-%d", n)
		}
	}
	strs := func(n, distinct int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = word(distinct)
		}
		return out
	}
	runs := func(n, distinct int) []string {
		out := make([]string, 0, n)
		for len(out) < n {
			w := word(distinct)
			for range rng.IntN(20) + 1 {
				out = append(out, w)
			}
		}
		return out[:n]
	}
	lists := func(n, distinct int) [][]string {
		out := make([][]string, n)
		for i := range out {
			switch rng.IntN(4) {
			case 0: // nil: an empty list
			case 1:
				out[i] = []string{}
			default:
				out[i] = strs(rng.IntN(6)+1, distinct)
			}
		}
		return out
	}
	tests := []struct {
		typ    string
		values any
	}{
		{"String", strs(1000, 900)},
		{"String", []string{}},
		{"LowCardinality(String)", strs(1000, 12)},
		{"LowCardinality(String)", strs(3000, 600)}, // two-byte keys
		{"LowCardinality(String)", runs(2000, 5)},   // runs of one value (the last value's shortcut)
		{"LowCardinality(String)", []string{""}},
		{"Array(String)", lists(1000, 50)},
		{"Array(LowCardinality(String))", lists(1000, 8)},
		{"Array(LowCardinality(String))", lists(2000, 400)},
		{"Array(String)", [][]string{nil, nil}},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d-%s", i, tt.typ), func(t *testing.T) {
			newCol := func() column.Interface {
				c, err := column.Type(tt.typ).Column("c", &column.ServerContext{})
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			driver, fast := newCol(), newCol()
			if _, err := driver.Append(tt.values); err != nil {
				t.Fatal(err)
			}
			if !fastAppend(fast, tt.values, nil, nil) {
				t.Fatalf("fastAppend did not take the %s column: clickhouse-go's layout changed (see fastfill.go)", tt.typ)
			}
			if driver.Rows() != fast.Rows() {
				t.Fatalf("rows: fast %d, driver %d", fast.Rows(), driver.Rows())
			}
			var want, got proto.Buffer
			driver.Encode(&want)
			fast.Encode(&got)
			if !bytes.Equal(got.Buf, want.Buf) {
				t.Fatalf("encoded %d bytes, driver %d; first difference at %d", len(got.Buf), len(want.Buf), firstDiffAt(got.Buf, want.Buf))
			}
		})
	}
}

// TestFastAppendLeavesOthersToTheDriver: columns and values it does not
// know, and columns that already hold rows, are not touched.
func TestFastAppendLeavesOthersToTheDriver(t *testing.T) {
	col := func(typ string) column.Interface {
		c, err := column.Type(typ).Column("c", &column.ServerContext{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	used := col("LowCardinality(String)")
	if _, err := used.Append([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	usedStr := col("String")
	if _, err := usedStr.Append([]string{"a"}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		col column.Interface
		v   any
	}{
		"UInt64":                       {col("UInt64"), []uint64{1}},
		"String with []any":            {col("String"), []any{"a"}},
		"Nullable LowCardinality":      {col("LowCardinality(Nullable(String))"), []string{"a"}},
		"LowCardinality holding rows":  {used, []string{"b"}},
		"String holding rows":          {usedStr, []string{"b"}},
		"Array(UInt64)":                {col("Array(UInt64)"), [][]uint64{{1}}},
		"Array(Array(String))":         {col("Array(Array(String))"), [][]string{{"a"}}},
		"Array(String) with [][]uint8": {col("Array(String)"), [][]uint8{{1}}},
	} {
		before := c.col.Rows()
		if fastAppend(c.col, c.v, nil, nil) {
			t.Errorf("%s: fastAppend took it", name)
		}
		if c.col.Rows() != before {
			t.Errorf("%s: rows %d -> %d", name, before, c.col.Rows())
		}
	}
}

func firstDiffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestFastAppendReusesBuffers: a String column borrows its buffers from the
// free list, release takes them back (the column keeps nothing), and the
// next column encodes the same bytes in the same memory.
func TestFastAppendReusesBuffers(t *testing.T) {
	pool := newBufLists(1)[0]
	values := []string{"alpha", "", "gamma-delta", "ε"}
	encode := func() ([]byte, *byte) {
		c, err := column.Type("String").Column("s", &column.ServerContext{})
		if err != nil {
			t.Fatal(err)
		}
		var kept keep
		if !fastAppend(c, values, &pool, &kept) {
			t.Fatal("fastAppend did not take the String column")
		}
		var out proto.Buffer
		c.Encode(&out)
		buf := strBuf(c.(*column.String))
		mem := unsafe.SliceData(buf.Buf)
		kept.release()
		if buf.Buf != nil || buf.Pos != nil {
			t.Fatal("the column kept its buffers after release")
		}
		return out.Buf, mem
	}
	first, firstMem := encode()
	second, secondMem := encode()
	if !bytes.Equal(first, second) {
		t.Fatal("a column on reused buffers encodes other bytes")
	}
	if firstMem == nil || secondMem != firstMem {
		t.Errorf("the second column's bytes are at %p, the first's at %p: the buffer was not reused", secondMem, firstMem)
	}
	runtime.GC()
	runtime.GC()
	if b, ok := take[*proto.ColStr](&pool); !ok || unsafe.SliceData(b.Buf[:1]) != firstMem {
		t.Errorf("after two collections the free list holds %v (%v); want the released buffer", b, ok)
	}
}

// TestBorrowFixedReusesBuffers: a fixed-width column (and a LowCardinality
// column's keys) appended on a buffer kept from the previous INSERT of the
// same column encodes the same bytes as a column the driver filled alone,
// and the second INSERT's buffer is the first one's memory.
func TestBorrowFixedReusesBuffers(t *testing.T) {
	at := []time.Time{time.Date(2026, 12, 2, 17, 0, 0, 250e6, time.UTC), time.Date(1999, 1, 2, 3, 4, 5, 0, time.UTC)}
	cases := []struct {
		typ    string
		values any
	}{
		{"DateTime64(3, 'UTC')", at},
		{"DateTime('UTC')", at},
		{"Int64", []int64{-1, 0, 1 << 40}},
		{"UInt8", []uint8{0, 1, 255}},
		{"UInt16", []uint16{0, 999, 65535}},
		{"UInt32", []uint32{0, 7, 1 << 31}},
		{"UInt64", []uint64{0, 7, 1 << 63}},
		{"LowCardinality(String)", []string{"a", "b", "a", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			newCol := func() column.Interface {
				c, err := column.Type(tc.typ).Column("x", &column.ServerContext{})
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			encode := func(c column.Interface) []byte {
				var out proto.Buffer
				c.Encode(&out)
				return out.Buf
			}
			plain := newCol()
			if _, err := plain.Append(tc.values); err != nil {
				t.Fatal(err)
			}
			want := encode(plain)

			pool := newBufLists(1)[0]
			var mems []uintptr
			for range 2 {
				c := newCol()
				var kept keep
				if !fastAppend(c, tc.values, &pool, &kept) {
					borrowFixed(c, &pool, &kept)
					if _, err := c.Append(tc.values); err != nil {
						t.Fatal(err)
					}
				}
				if len(kept.give) != 1 {
					t.Fatalf("%d buffers borrowed, want 1", len(kept.give))
				}
				if got := encode(c); !bytes.Equal(got, want) {
					t.Fatalf("encoded %x, the driver alone %x", got, want)
				}
				kept.release()
				v, ok := pool.Get()
				if !ok {
					t.Fatal("release gave nothing back")
				}
				mems = append(mems, reflect.ValueOf(v).Pointer())
				pool.Put(v)
			}
			if mems[0] == 0 || mems[1] != mems[0] {
				t.Errorf("buffers at %#x then %#x: the second INSERT did not reuse the first one's", mems[0], mems[1])
			}
		})
	}
}

// BenchmarkFastAppendLowCardinality: a batch's LowCardinality column as the
// mapping fills it — one tenant for every row, and event types in runs.
func BenchmarkFastAppendLowCardinality(b *testing.B) {
	const n = 5000
	tenant := make([]string, n)
	types := make([]string, n)
	for i := range n {
		tenant[i] = "e9d5e588-01e5-452f-a7e0-c51ad1d56a4a"
		types[i] = fmt.Sprintf("policy.type-%d", (i/7)%40)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, vals := range [][]string{tenant, types} {
			c, err := column.Type("LowCardinality(String)").Column("x", &column.ServerContext{})
			if err != nil {
				b.Fatal(err)
			}
			if !fastAppend(c, vals, nil, nil) {
				b.Fatal("not taken")
			}
		}
	}
}
