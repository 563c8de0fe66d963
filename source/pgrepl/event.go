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
