package pgrepl

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

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

// toEvent builds the event of one row; seq orders it (see Seq on source.Event).
func (s *Source) toEvent(v *rowValues, seq uint64) (source.Event, error) {
	if v[fLocator] == "" {
		return source.Event{}, fmt.Errorf("row without %s (the locator column)", s.cfg.Columns.Locator)
	}
	ts, err := parseTime(v[fOccurredAt])
	if err != nil {
		return source.Event{}, fmt.Errorf("event %s: column %s: %w", v[fLocator], s.cfg.Columns.OccurredAt, err)
	}
	data := v[fData]
	if strings.TrimSpace(data) == "" {
		data = "null"
	} else if !s.dataIsJSON && !json.Valid([]byte(data)) {
		return source.Event{}, fmt.Errorf("event %s: column %s is not valid JSON", v[fLocator], s.cfg.Columns.Data)
	}
	tenant := v[fTenant]
	if tenant == "" {
		tenant = s.cfg.Tenant
	}
	flavor := s.cfg.Flavor
	if flavor == "" {
		flavor = v[fFlavor]
	}
	if flavor == "" {
		flavor = source.FlavorPostgres
	}
	return source.Event{
		Locator:       v[fLocator],
		RequestID:     v[fRequestID],
		UserLocator:   v[fUserLocator],
		Username:      v[fUsername],
		TransactionID: v[fTransactionID],
		Tenant:        tenant,
		Type:          v[fType],
		Timestamp:     ts,
		Data:          json.RawMessage(data),
		Flavor:        flavor,
		Seq:           seq,
	}, nil
}

// skip counts and logs a row that cannot be an event (a NULL locator, an
// unreadable time, invalid JSON in a text column): one bad row must not stop
// the stream for good.
func (s *Source) skip(err error) {
	s.mu.Lock()
	s.stats.Skipped++
	s.mu.Unlock()
	s.log.Error("row skipped", "err", err)
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
