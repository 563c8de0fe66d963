package clickhouse

import (
	"errors"
	"fmt"
	"time"

	"github.com/tributary-cdc/tributary/internal/fault"

	"github.com/tributary-cdc/tributary/mapping"
)

// epoch is where a zero time.Time is stored: 1970-01-01 00:00:00 UTC.
var epoch = time.Unix(0, 0).UTC()

// legacyMax is the last second a legacy DateTime (UInt32) can hold.
var legacyMax = time.Unix(1<<32-1, 0).UTC()

// modernMin and modernMax bound what DateTime64(3) holds.
var (
	modernMin = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	modernMax = time.Date(2299, 12, 31, 23, 59, 59, 999e6, time.UTC)
)

// rangeError is a value of a row that the column's type cannot hold: the
// row's content is refused (poison), not the table.
type rangeError struct{ err error }

func (e *rangeError) Error() string { return e.err.Error() }
func (e *rangeError) Unwrap() error { return e.err }

// toColumns turns a table's mapped rows into one typed slice per physical
// column, in the INSERT's column order. String, integer, list and nullable
// string columns are passed on as they are; booleans and times are converted.
// Rows of the wrong shape are a permanent error (a bug); a value the column
// cannot hold (a time out of range) refuses the rows (poison).
func (tw *tableWriter) toColumns(rows *mapping.TableRows) ([]any, error) {
	if err := rows.Check(); err != nil {
		return nil, permanent("%w", err)
	}
	cols := rows.Table.Columns
	if len(cols) != tw.width {
		return nil, permanent("table %s rows have %d columns, want %d", tw.name, len(cols), tw.width)
	}
	out := make([]any, len(tw.cols))
	for ci, c := range tw.cols {
		if got := cols[c.src]; got.Type != c.logical {
			return nil, permanent("table %s column %s: rows hold a %s column, want %s", tw.name, c.Name, got.Type, c.logical)
		}
		col, err := buildColumn(c, tw.dialect, &rows.Values[c.src])
		var re *rangeError
		switch {
		case errors.As(err, &re):
			return nil, fault.Poison(fmt.Errorf("table %s column %s: %w", tw.name, c.Name, err))
		case err != nil:
			return nil, permanent("table %s column %s: %w", tw.name, c.Name, err)
		}
		out[ci] = col
	}
	return out, nil
}

// utc returns t in UTC, the zero time as the epoch.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return epoch
	}
	return t.UTC()
}

func legacySeconds(t time.Time) (time.Time, error) {
	if t.Before(epoch) || t.After(legacyMax) {
		return t, &rangeError{fmt.Errorf("time %s is outside what DateTime holds (1970 to 2106)", t.Format(time.RFC3339))}
	}
	return t.Truncate(time.Second), nil
}

func modernMillis(t time.Time) (time.Time, error) {
	if t.Before(modernMin) || t.After(modernMax) {
		return t, &rangeError{fmt.Errorf("time %s is outside what DateTime64 holds (1900 to 2299)", t.Format(time.RFC3339))}
	}
	return t.Truncate(time.Millisecond), nil
}

// buildColumn converts one physical column's values.
func buildColumn(c physCol, d Dialect, v *mapping.Values) (any, error) {
	switch c.logical {
	case mapping.String, mapping.LowString:
		return v.Strings, nil
	case mapping.UInt64:
		return v.UInt64s, nil
	case mapping.UInt32:
		return v.UInt32s, nil
	case mapping.Bool:
		out := make([]uint8, len(v.Bools))
		for i, b := range v.Bools {
			if b {
				out[i] = 1
			}
		}
		return out, nil
	case mapping.ArrayString, mapping.ArrayLowString:
		return v.Lists, nil
	case mapping.NullableString:
		return v.NullStrings, nil
	case mapping.Int64:
		return v.Int64s, nil
	case mapping.NullableInt64:
		return v.NullInt64s, nil
	case mapping.Time:
		return buildTimeColumn(c, d, v.Times)
	case mapping.NullableTime:
		return buildNullTimeColumn(c, d, v.NullTimes)
	}
	return nil, fmt.Errorf("unknown logical type %d", int(c.logical))
}

// timeConv returns how d stores a time: whole seconds (legacy, checked
// against DateTime's range) or milliseconds.
func timeConv(d Dialect) func(time.Time) (time.Time, error) {
	if d == Legacy {
		return legacySeconds
	}
	return modernMillis
}

// millisOf returns the milliseconds (0-999) of t, stored in a legacy _ms twin.
func millisOf(t time.Time) uint16 { return uint16(utc(t).Nanosecond() / int(time.Millisecond)) }

func buildTimeColumn(c physCol, d Dialect, times []time.Time) (any, error) {
	if c.part == millis {
		out := make([]uint16, len(times))
		for i, t := range times {
			out[i] = millisOf(t)
		}
		return out, nil
	}
	conv := timeConv(d)
	out := make([]time.Time, len(times))
	for i, t := range times {
		t, err := conv(utc(t))
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		out[i] = t
	}
	return out, nil
}

func buildNullTimeColumn(c physCol, d Dialect, times []*time.Time) (any, error) {
	if c.part == millis {
		out := make([]uint16, len(times))
		for i, t := range times {
			if t != nil {
				out[i] = millisOf(*t)
			}
		}
		return out, nil
	}
	conv := timeConv(d)
	out := make([]*time.Time, len(times))
	for i, t := range times {
		if t == nil {
			continue
		}
		v, err := conv(utc(*t))
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		out[i] = &v
	}
	return out, nil
}
