package pgrepl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/tributary-cdc/tributary/source"
)

// rowValues holds a row's text values in columnFields order ("" for an absent
// column or a NULL).
type rowValues [numFields]string

// timeLayouts are the text forms of timestamptz and timestamp with DateStyle
// ISO (the sessions set TimeZone UTC, so the offset is normally +00).
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07:00:00",
	"2006-01-02 15:04:05.999999999",
	time.RFC3339Nano,
}

// parseTime reads a timestamptz or timestamp text value, as UTC with
// millisecond precision.
func parseTime(s string) (time.Time, error) {
	if t, ok := parseUTCTime(s); ok {
		return t, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC().Truncate(time.Millisecond), nil
		}
	}
	return time.Time{}, fmt.Errorf("unreadable time %q", s)
}

// toEvent builds the event of one row; seq orders it (see Seq on
// source.Event). A row that cannot be read as an event (no locator or type,
// no readable time, invalid JSON in a text data column, a data value the
// server did not send) becomes a reject: Event.Reject says why, Data holds
// the row's raw values (see rawRow) and the other fields what could be read.
// The reasons start with the kind of the first problem (source.Reject*)
// and name columns, never values, so they form a small fixed set.
func (s *Source) toEvent(t *tuple, seq uint64) source.Event {
	v := &t.v
	cols := &s.cfg.Columns
	var problems []string
	kind := "" // the kind of the first problem (source.Reject*)
	problem := func(k, format string, args ...any) {
		if kind == "" {
			kind = k
		}
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	if t.toast != 0 {
		for i, f := range s.cfg.columnFields() {
			if t.toast.has(i) {
				problem(source.RejectOther, "column %s is an unchanged TOASTed value the server did not send (set REPLICA IDENTITY FULL on the table)", f.column)
			}
		}
		s.mu.Lock()
		s.stats.UnchangedToast++
		s.mu.Unlock()
	}
	if v[fLocator] == "" {
		problem(source.RejectMissingField, "locator column %s is %s", cols.Locator, nullOrEmpty(t, fLocator))
	}
	if v[fType] == "" {
		problem(source.RejectMissingField, "type column %s is %s", cols.Type, nullOrEmpty(t, fType))
	}
	ts, err := parseTime(v[fOccurredAt])
	if err != nil && !t.toast.has(fOccurredAt) {
		if t.null.has(fOccurredAt) {
			problem(source.RejectMissingField, "time column %s is NULL", cols.OccurredAt)
		} else {
			problem(source.RejectBadTime, "time column %s is not a readable timestamp", cols.OccurredAt)
		}
	}
	data := v[fData]
	if strings.TrimSpace(data) == "" {
		data = "null"
	} else if !s.dataIsJSON && !json.Valid(unsafe.Slice(unsafe.StringData(data), len(data))) {
		problem(source.RejectInvalidJSON, "data column %s is not valid JSON", cols.Data)
	}
	tenant := v[fTenant]
	if tenant == "" {
		tenant = s.cfg.Tenant
	}
	ev := source.Event{
		Locator:       v[fLocator],
		RequestID:     v[fRequestID],
		UserLocator:   v[fUserLocator],
		Username:      v[fUsername],
		TransactionID: v[fTransactionID],
		Tenant:        tenant,
		Type:          v[fType],
		Timestamp:     ts,
		Seq:           seq,
	}
	if len(problems) > 0 {
		ev.Reject = source.RejectReason(kind, strings.Join(problems, "; "))
		ev.Data = s.rawRow(t)
		ev.Flavor = source.FlavorPostgres
		s.mu.Lock()
		s.stats.Rejects++
		s.mu.Unlock()
		return ev
	}
	// data is a substring of the WAL message, which the streamer copied out
	// of the connection's buffer and nothing changes: Data shares it.
	ev.Data = unsafe.Slice(unsafe.StringData(data), len(data))
	ev.Flavor = s.cfg.Flavor
	if ev.Flavor == "" {
		ev.Flavor = v[fFlavor]
	}
	if ev.Flavor == "" {
		ev.Flavor = source.FlavorPostgres
	}
	return ev
}

func nullOrEmpty(t *tuple, f int) string {
	if t.null.has(f) {
		return "NULL"
	}
	return "empty"
}

// rawRow is a rejected row as received: a JSON object of the mapped columns'
// names and text values, null for NULL, in --pg.column.* order; a column
// whose value the server did not send (an unchanged TOASTed value) is left
// out. Inserting these values again replays the row.
func (s *Source) rawRow(t *tuple) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteByte('{')
	first := true
	for i, f := range s.cfg.columnFields() {
		if f.column == "" || t.toast.has(i) {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		_ = enc.Encode(f.column)
		b.Truncate(b.Len() - 1) // Encode's newline
		b.WriteByte(':')
		if t.null.has(i) {
			b.WriteString("null")
			continue
		}
		_ = enc.Encode(t.v[i])
		b.Truncate(b.Len() - 1)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// parseUTCTime reads the form a UTC session prints, "2006-01-02 15:04:05",
// an optional fraction, then "+00", "+00:00" or nothing, several times faster
// than time.Parse (it runs once per row). Anything else, or an impossible
// date, is not ok and goes to the general layouts.
func parseUTCTime(s string) (time.Time, bool) {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, ok4 := num(11, 13)
	minute, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	p := 19
	nanos := 0
	if p < len(s) && s[p] == '.' {
		p++
		digits := 0
		for p < len(s) && s[p] >= '0' && s[p] <= '9' {
			if digits < 9 {
				nanos = nanos*10 + int(s[p]-'0')
				digits++
			}
			p++
		}
		if digits == 0 {
			return time.Time{}, false
		}
		for ; digits < 9; digits++ {
			nanos *= 10
		}
	}
	switch s[p:] {
	case "", "+00", "+00:00":
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nanos, time.UTC)
	if t.Day() != day { // February 30th and the like
		return time.Time{}, false
	}
	return t.Truncate(time.Millisecond), true
}
