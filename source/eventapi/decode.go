package eventapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tributary-cdc/tributary/source"
)

// page is one page of the stream as fetched, or the failure of the request
// that should have fetched it.
type page struct {
	reqToken string         // the token it was fetched with ("": the configured filters)
	events   []source.Event // in the server's order
	next     string         // the token returned with it
	skip     int            // events at its start already delivered before a resume
	err      error          // the request failed (or the stream ended) instead
}

// suiteEvent is the suite's EventResponse.
type suiteEvent struct {
	Locator     string          `json:"locator"`
	RequestID   string          `json:"requestId"`
	UserLocator string          `json:"userLocator"`
	Timestamp   string          `json:"timestamp"`
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data"`
}

// classicEvent is the classic EventResponse (and webhook body).
type classicEvent struct {
	ID            json.RawMessage `json:"id"`
	Timestamp     json.RawMessage `json:"timestamp"`
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data"`
	Username      string          `json:"username"`
	TransactionID json.RawMessage `json:"transactionId"`
}

// decodePage parses a page body of flavor into events and the next token.
// The token is required: the API always returns one.
func decodePage(flavor, tenant string, body []byte) ([]source.Event, string, error) {
	if flavor == source.FlavorClassic {
		return decodeEvents[classicEvent](tenant, body)
	}
	return decodeEvents[suiteEvent](tenant, body)
}

// decodeEvents parses a page whose events have the wire form E.
func decodeEvents[E any, P interface {
	*E
	event(tenant string) (source.Event, error)
}](tenant string, body []byte) ([]source.Event, string, error) {
	var p struct {
		Events      []E     `json:"events"`
		PagingToken *string `json:"pagingToken"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", err
	}
	if p.PagingToken == nil || *p.PagingToken == "" {
		return nil, "", errors.New("no pagingToken")
	}
	evs := make([]source.Event, len(p.Events))
	for i := range p.Events {
		ev, err := P(&p.Events[i]).event(tenant)
		if err != nil {
			return nil, "", fmt.Errorf("event %d of the page: %w", i, err)
		}
		evs[i] = ev
	}
	return evs, *p.PagingToken, nil
}

func (e *suiteEvent) event(tenant string) (source.Event, error) {
	if e.Locator == "" || e.Type == "" || e.Timestamp == "" {
		return source.Event{}, fmt.Errorf("event %q lacks a locator, type or timestamp", e.Locator)
	}
	ts, err := time.Parse(time.RFC3339Nano, e.Timestamp)
	if err != nil {
		return source.Event{}, fmt.Errorf("event %s: timestamp: %w", e.Locator, err)
	}
	ts = ts.UTC().Truncate(time.Millisecond)
	return source.Event{
		Locator:     e.Locator,
		RequestID:   e.RequestID,
		UserLocator: e.UserLocator,
		Tenant:      tenant,
		Type:        e.Type,
		Timestamp:   ts,
		Data:        rawData(e.Data),
		Flavor:      source.FlavorSuite,
		Seq:         uint64(ts.UnixMilli()),
	}, nil
}

func (e *classicEvent) event(tenant string) (source.Event, error) {
	id := scalarString(e.ID)
	if id == "" || e.Type == "" || len(e.Timestamp) == 0 {
		return source.Event{}, fmt.Errorf("event %q lacks an id, type or timestamp", id)
	}
	ms, err := strconv.ParseInt(scalarString(e.Timestamp), 10, 64)
	if err != nil {
		return source.Event{}, fmt.Errorf("event %s: timestamp %s: want milliseconds since the epoch", id, e.Timestamp)
	}
	ts := time.UnixMilli(ms).UTC()
	return source.Event{
		Locator:       id,
		Username:      e.Username,
		TransactionID: scalarString(e.TransactionID),
		Tenant:        tenant,
		Type:          e.Type,
		Timestamp:     ts,
		Data:          rawData(e.Data),
		Flavor:        source.FlavorClassic,
		Seq:           uint64(ms),
	}, nil
}

// scalarString returns a JSON string's value or a number's text; "" for null
// or absent.
func scalarString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return ""
	}
	return string(raw)
}

// rawData returns the payload exactly as delivered, or {} when absent. The
// slice is owned: json.Unmarshal copies a RawMessage out of the body.
func rawData(d json.RawMessage) json.RawMessage {
	if len(d) == 0 {
		return json.RawMessage(`{}`)
	}
	return d
}
