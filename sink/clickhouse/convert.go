package clickhouse

import (
	"fmt"
	"time"

	"github.com/tributary-cdc/tributary/mapping"
)

// epoch is where a zero time.Time is stored: 1970-01-01 00:00:00 UTC.
var epoch = time.Unix(0, 0).UTC()

// legacyMax is the last second a legacy DateTime (UInt32) can hold.
var legacyMax = time.Unix(1<<32-1, 0).UTC()

// permanentError marks a failure that no retry can fix (a row of the wrong
// shape, a value out of range).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent reports true: retrying cannot fix the error, so the pipeline
// (pipeline.IsPermanent) stops instead of retrying.
func (e *permanentError) Permanent() bool { return true }

func permanent(format string, args ...any) error {
	return &permanentError{err: fmt.Errorf(format, args...)}
}

// toColumns turns rows (values in the order of the table's logical columns)
// into one typed slice per physical column, in the INSERT's column order.
func (tw *tableWriter) toColumns(rows [][]any) ([]any, error) {
	for i, r := range rows {
		if len(r) != tw.width {
			return nil, permanent("table %s row %d has %d values, want %d", tw.name, i, len(r), tw.width)
		}
	}
	out := make([]any, len(tw.cols))
	for ci, c := range tw.cols {
		col, err := buildColumn(c, tw.dialect, rows)
		if err != nil {
			return nil, permanent("table %s column %s: %w", tw.name, c.Name, err)
		}
		out[ci] = col
	}
	return out, nil
}

func timeValue(v any, nullable bool) (t time.Time, null bool, err error) {
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			if !nullable {
				return t, false, fmt.Errorf("nil *time.Time in a non-nullable time column")
			}
			return t, true, nil
		}
		t = *x
	case nil:
		if !nullable {
			return t, false, fmt.Errorf("nil in a non-nullable time column")
		}
		return t, true, nil
	default:
		return t, false, fmt.Errorf("got %T, want time.Time", v)
	}
	if t.IsZero() {
		return epoch, false, nil
	}
	return t.UTC(), false, nil
}

func legacySeconds(t time.Time) (time.Time, error) {
	if t.Before(epoch) || t.After(legacyMax) {
		return t, fmt.Errorf("time %s is outside what DateTime holds (1970 to 2106)", t.Format(time.RFC3339))
	}
	return t.Truncate(time.Second), nil
}

// buildColumn converts one physical column of rows.
func buildColumn(c physCol, d Dialect, rows [][]any) (any, error) {
	n := len(rows)
	switch c.logical {
	case mapping.String, mapping.LowString:
		out := make([]string, n)
		for i, r := range rows {
			s, ok := r[c.src].(string)
			if !ok {
				return nil, fmt.Errorf("row %d: got %T, want string", i, r[c.src])
			}
			out[i] = s
		}
		return out, nil
	case mapping.UInt64:
		out := make([]uint64, n)
		for i, r := range rows {
			v, ok := r[c.src].(uint64)
			if !ok {
				return nil, fmt.Errorf("row %d: got %T, want uint64", i, r[c.src])
			}
			out[i] = v
		}
		return out, nil
	case mapping.UInt32:
		out := make([]uint32, n)
		for i, r := range rows {
			v, ok := r[c.src].(uint32)
			if !ok {
				return nil, fmt.Errorf("row %d: got %T, want uint32", i, r[c.src])
			}
			out[i] = v
		}
		return out, nil
	case mapping.Bool:
		out := make([]uint8, n)
		for i, r := range rows {
			v, ok := r[c.src].(bool)
			if !ok {
				return nil, fmt.Errorf("row %d: got %T, want bool", i, r[c.src])
			}
			if v {
				out[i] = 1
			}
		}
		return out, nil
	case mapping.ArrayString, mapping.ArrayLowString:
		out := make([][]string, n)
		for i, r := range rows {
			switch v := r[c.src].(type) {
			case []string:
				if v == nil {
					v = []string{}
				}
				out[i] = v
			case nil:
				out[i] = []string{}
			default:
				return nil, fmt.Errorf("row %d: got %T, want []string", i, r[c.src])
			}
		}
		return out, nil
	case mapping.NullableString:
		out := make([]*string, n)
		for i, r := range rows {
			switch v := r[c.src].(type) {
			case *string:
				out[i] = v
			case nil:
			default:
				return nil, fmt.Errorf("row %d: got %T, want *string", i, r[c.src])
			}
		}
		return out, nil
	case mapping.Time, mapping.NullableTime:
		return buildTimeColumn(c, d, rows)
	}
	return nil, fmt.Errorf("unknown logical type %d", int(c.logical))
}

func buildTimeColumn(c physCol, d Dialect, rows [][]any) (any, error) {
	n := len(rows)
	nullable := c.logical == mapping.NullableTime
	if c.part == millis {
		out := make([]uint16, n)
		for i, r := range rows {
			t, _, err := timeValue(r[c.src], nullable)
			if err != nil {
				return nil, fmt.Errorf("row %d: %w", i, err)
			}
			out[i] = uint16(t.Nanosecond() / int(time.Millisecond))
		}
		return out, nil
	}
	conv := func(t time.Time) (time.Time, error) {
		if d == Legacy {
			return legacySeconds(t)
		}
		return t.Truncate(time.Millisecond), nil
	}
	if !nullable {
		out := make([]time.Time, n)
		for i, r := range rows {
			t, _, err := timeValue(r[c.src], false)
			if err == nil {
				t, err = conv(t)
			}
			if err != nil {
				return nil, fmt.Errorf("row %d: %w", i, err)
			}
			out[i] = t
		}
		return out, nil
	}
	out := make([]*time.Time, n)
	for i, r := range rows {
		t, null, err := timeValue(r[c.src], true)
		if err == nil && !null {
			t, err = conv(t)
		}
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		if !null {
			out[i] = &t
		}
	}
	return out, nil
}
