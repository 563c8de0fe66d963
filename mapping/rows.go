package mapping

import (
	"fmt"
	"time"
)

// Rows holds mapped rows per table name, column by column: each table's
// values sit in one typed slice per column, so a batch of rows is a few dozen
// slices rather than a value boxed in an interface per cell, and a sink can
// hand the slices to its driver without converting them.
type Rows struct {
	ByTable map[string]*TableRows

	arena arena // Map's small lists (policy lists, statuses, locator keys)
}

// NewRows returns an empty Rows.
func NewRows() *Rows { return &Rows{ByTable: map[string]*TableRows{}} }

// Table returns the rows of table t, adding an empty set when r has none yet.
func (r *Rows) Table(t Table) *TableRows {
	if r.ByTable == nil {
		r.ByTable = map[string]*TableRows{}
	}
	if tr := r.ByTable[t.Name]; tr != nil {
		return tr
	}
	tr := &TableRows{Table: t, Values: make([]Values, len(t.Columns))}
	r.ByTable[t.Name] = tr
	return tr
}

// Reset empties r for reuse by the next Map call, keeping every column's
// memory (a batch's columns are the process's largest allocations). The
// values are cleared, so that r no longer holds on to what they pointed to.
func (r *Rows) Reset() {
	for _, t := range r.ByTable {
		for i := range t.Values {
			v := &t.Values[i]
			clear(v.Strings)
			clear(v.Lists)
			clear(v.NullStrings)
			clear(v.NullTimes)
			clear(v.NullInt64s)
			*v = Values{
				Strings: v.Strings[:0], Times: v.Times[:0], UInt64s: v.UInt64s[:0], UInt32s: v.UInt32s[:0],
				Bools: v.Bools[:0], Lists: v.Lists[:0], NullStrings: v.NullStrings[:0], NullTimes: v.NullTimes[:0],
				Int64s: v.Int64s[:0], NullInt64s: v.NullInt64s[:0],
			}
		}
		t.n = 0
	}
	r.arena.reset()
}

// Len returns the number of rows over all tables.
func (r *Rows) Len() int {
	n := 0
	for _, t := range r.ByTable {
		n += t.Len()
	}
	return n
}

// Counts returns the number of rows of each table that has rows.
func (r *Rows) Counts() map[string]int {
	out := make(map[string]int, len(r.ByTable))
	for name, t := range r.ByTable {
		if n := t.Len(); n > 0 {
			out[name] = n
		}
	}
	return out
}

// TableRows holds the rows of one table: Values[i] holds the values of
// Table.Columns[i], in the field that the column's type uses; every column
// holds Len values.
type TableRows struct {
	Table  Table
	Values []Values
	n      int
}

// Values holds the values of one column. The field the column's type uses
// is filled; the others stay empty.
type Values struct {
	Strings     []string     // String, LowString
	Times       []time.Time  // Time: UTC, millisecond precision
	UInt64s     []uint64     // UInt64
	UInt32s     []uint32     // UInt32
	Bools       []bool       // Bool
	Lists       [][]string   // ArrayString, ArrayLowString (a nil list is empty)
	NullStrings []*string    // NullableString (nil is NULL)
	NullTimes   []*time.Time // NullableTime (nil is NULL)
	Int64s      []int64      // Int64
	NullInt64s  []*int64     // NullableInt64 (nil is NULL)
}

// len returns how many values v holds in the field that type t uses.
func (v *Values) len(t ColumnType) int {
	switch t {
	case String, LowString:
		return len(v.Strings)
	case Time:
		return len(v.Times)
	case UInt64:
		return len(v.UInt64s)
	case UInt32:
		return len(v.UInt32s)
	case Bool:
		return len(v.Bools)
	case ArrayString, ArrayLowString:
		return len(v.Lists)
	case NullableString:
		return len(v.NullStrings)
	case NullableTime:
		return len(v.NullTimes)
	case Int64:
		return len(v.Int64s)
	case NullableInt64:
		return len(v.NullInt64s)
	}
	return -1
}

// Len returns the number of rows; 0 for nil.
func (t *TableRows) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// Check reports an error when a column does not hold exactly Len values in
// the field its type uses (rows assembled by hand can get this wrong; Map
// cannot).
func (t *TableRows) Check() error {
	if len(t.Values) != len(t.Table.Columns) {
		return fmt.Errorf("table %s has values for %d columns, want %d", t.Table.Name, len(t.Values), len(t.Table.Columns))
	}
	for i, c := range t.Table.Columns {
		if got := t.Values[i].len(c.Type); got != t.n {
			return fmt.Errorf("table %s column %s holds %d values, want %d", t.Table.Name, c.Name, got, t.n)
		}
	}
	return nil
}

// AppendRow appends one row given as values in the order of Table.Columns,
// each of the Go type that schema.go documents for its column type (nil
// stands for NULL in nullable columns and for an empty list). Nothing is
// appended when a value has the wrong type.
func (t *TableRows) AppendRow(row []any) error {
	cols := t.Table.Columns
	if len(row) != len(cols) {
		return fmt.Errorf("table %s: row has %d values, want %d", t.Table.Name, len(row), len(cols))
	}
	for i, c := range cols {
		if !fits(c.Type, row[i]) {
			return fmt.Errorf("table %s column %s: got %T, want %s", t.Table.Name, c.Name, row[i], goType(c.Type))
		}
	}
	for i, c := range cols {
		v := &t.Values[i]
		switch c.Type {
		case String, LowString:
			v.Strings = append(v.Strings, row[i].(string))
		case Time:
			v.Times = append(v.Times, row[i].(time.Time))
		case UInt64:
			v.UInt64s = append(v.UInt64s, row[i].(uint64))
		case UInt32:
			v.UInt32s = append(v.UInt32s, row[i].(uint32))
		case Bool:
			v.Bools = append(v.Bools, row[i].(bool))
		case ArrayString, ArrayLowString:
			l, _ := row[i].([]string)
			v.Lists = append(v.Lists, l)
		case NullableString:
			p, _ := row[i].(*string)
			v.NullStrings = append(v.NullStrings, p)
		case NullableTime:
			p, _ := row[i].(*time.Time)
			v.NullTimes = append(v.NullTimes, p)
		case Int64:
			v.Int64s = append(v.Int64s, row[i].(int64))
		case NullableInt64:
			p, _ := row[i].(*int64)
			v.NullInt64s = append(v.NullInt64s, p)
		}
	}
	t.n++
	return nil
}

func fits(t ColumnType, v any) bool {
	switch t {
	case String, LowString:
		_, ok := v.(string)
		return ok
	case Time:
		_, ok := v.(time.Time)
		return ok
	case UInt64:
		_, ok := v.(uint64)
		return ok
	case UInt32:
		_, ok := v.(uint32)
		return ok
	case Bool:
		_, ok := v.(bool)
		return ok
	case ArrayString, ArrayLowString:
		_, ok := v.([]string)
		return ok || v == nil
	case NullableString:
		_, ok := v.(*string)
		return ok || v == nil
	case NullableTime:
		_, ok := v.(*time.Time)
		return ok || v == nil
	case Int64:
		_, ok := v.(int64)
		return ok
	case NullableInt64:
		_, ok := v.(*int64)
		return ok || v == nil
	}
	return false
}

// String names the column type as its constant does, for error messages.
func (t ColumnType) String() string {
	switch t {
	case String:
		return "String"
	case LowString:
		return "LowString"
	case Time:
		return "Time"
	case UInt64:
		return "UInt64"
	case UInt32:
		return "UInt32"
	case Bool:
		return "Bool"
	case ArrayString:
		return "ArrayString"
	case ArrayLowString:
		return "ArrayLowString"
	case NullableString:
		return "NullableString"
	case NullableTime:
		return "NullableTime"
	case Int64:
		return "Int64"
	case NullableInt64:
		return "NullableInt64"
	}
	return fmt.Sprintf("ColumnType(%d)", int(t))
}

func goType(t ColumnType) string {
	switch t {
	case String, LowString:
		return "string"
	case Time:
		return "time.Time"
	case UInt64:
		return "uint64"
	case UInt32:
		return "uint32"
	case Bool:
		return "bool"
	case ArrayString, ArrayLowString:
		return "[]string"
	case NullableString:
		return "*string"
	case NullableTime:
		return "*time.Time"
	case Int64:
		return "int64"
	case NullableInt64:
		return "*int64"
	}
	return fmt.Sprintf("column type %d", int(t))
}

// Row returns row i as values in the order of Table.Columns, of the Go types
// AppendRow takes (lists and pointers are shared, not copied). It is meant
// for tests and inspection; sinks read Values.
func (t *TableRows) Row(i int) []any {
	out := make([]any, len(t.Table.Columns))
	for c, col := range t.Table.Columns {
		v := &t.Values[c]
		switch col.Type {
		case String, LowString:
			out[c] = v.Strings[i]
		case Time:
			out[c] = v.Times[i]
		case UInt64:
			out[c] = v.UInt64s[i]
		case UInt32:
			out[c] = v.UInt32s[i]
		case Bool:
			out[c] = v.Bools[i]
		case ArrayString, ArrayLowString:
			l := v.Lists[i]
			if l == nil {
				l = []string{}
			}
			out[c] = l
		case NullableString:
			out[c] = v.NullStrings[i]
		case NullableTime:
			out[c] = v.NullTimes[i]
		case Int64:
			out[c] = v.Int64s[i]
		case NullableInt64:
			out[c] = v.NullInt64s[i]
		}
	}
	return out
}

// AllRows returns every row as Row does; nil for nil.
func (t *TableRows) AllRows() [][]any {
	if t == nil {
		return nil
	}
	out := make([][]any, t.n)
	for i := range out {
		out[i] = t.Row(i)
	}
	return out
}

// Slice returns rows [from, to) of t, sharing t's values.
func (t *TableRows) Slice(from, to int) *TableRows {
	out := &TableRows{Table: t.Table, Values: make([]Values, len(t.Values)), n: to - from}
	for i, c := range t.Table.Columns {
		v, o := &t.Values[i], &out.Values[i]
		switch c.Type {
		case String, LowString:
			o.Strings = v.Strings[from:to]
		case Time:
			o.Times = v.Times[from:to]
		case UInt64:
			o.UInt64s = v.UInt64s[from:to]
		case UInt32:
			o.UInt32s = v.UInt32s[from:to]
		case Bool:
			o.Bools = v.Bools[from:to]
		case ArrayString, ArrayLowString:
			o.Lists = v.Lists[from:to]
		case NullableString:
			o.NullStrings = v.NullStrings[from:to]
		case NullableTime:
			o.NullTimes = v.NullTimes[from:to]
		case Int64:
			o.Int64s = v.Int64s[from:to]
		case NullableInt64:
			o.NullInt64s = v.NullInt64s[from:to]
		}
	}
	return out
}
