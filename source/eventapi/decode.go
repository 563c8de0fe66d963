package eventapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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

// wireEvent is a pointer to an event's wire form E. event converts it; a
// non-empty reason says why the event cannot be read (the event then holds
// whatever could be read).
type wireEvent[E any] interface {
	*E
	event(tenant string) (ev source.Event, reason string)
}

// Reject reasons start with one of the source.Reject* kinds, then ": " and
// the detail.
const (
	rejectMissing   = source.RejectMissingField // no locator (classic: id), type or timestamp
	rejectTimestamp = source.RejectBadTime      // a timestamp that does not parse
	rejectInvalid   = source.RejectInvalidJSON  // not an object, or a field of the wrong JSON type
)

// decodePage parses a page body of flavor into events and the next token.
//
// The page itself must be what the API promises, or the error says how it is
// malformed: JSON, an object whose events are an array, and a pagingToken
// (the API always returns one). An event that cannot be read (a missing
// locator, type or timestamp, an unparsable timestamp, a field of the wrong
// JSON type) does not fail the page: it is returned in its place with Reject
// set and Data holding its raw bytes (see markRejects).
//
// Pages of the usual shape are read by decodePageFast; the rest, and every
// malformed page, by decodePageReference. body is handed over: events may
// point into it, so it must never change afterwards.
func decodePage(flavor, tenant string, body []byte) ([]source.Event, string, error) {
	if evs, next, ok := decodePageFast(flavor, tenant, body); ok {
		return evs, next, nil
	}
	return decodePageReference(flavor, tenant, body)
}

// decodePageReference is decodePage with encoding/json: the straightforward
// implementation, which decodePageFast must agree with.
func decodePageReference(flavor, tenant string, body []byte) ([]source.Event, string, error) {
	if flavor == source.FlavorClassic {
		return decodeEvents[classicEvent](tenant, body)
	}
	return decodeEvents[suiteEvent](tenant, body)
}

// decodeEvents parses a page whose events have the wire form E in one pass;
// the events' raw bytes are scanned again only when one is rejected.
func decodeEvents[E any, P wireEvent[E]](tenant string, body []byte) ([]source.Event, string, error) {
	var p struct {
		Events      []E     `json:"events"`
		PagingToken *string `json:"pagingToken"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// Valid JSON with a value of the wrong type somewhere: decode
			// event by event, so that only the culprits are rejected.
			return decodeEventsOneByOne[E, P](tenant, body)
		}
		return nil, "", err
	}
	if p.PagingToken == nil || *p.PagingToken == "" {
		return nil, "", errors.New("no pagingToken")
	}
	evs := make([]source.Event, len(p.Events))
	var raws []json.RawMessage // scanned on the first reject
	for i := range p.Events {
		ev, reason := P(&p.Events[i]).event(tenant)
		if reason != "" {
			if raws == nil {
				var r struct {
					Events []json.RawMessage `json:"events"`
				}
				if err := json.Unmarshal(body, &r); err != nil || len(r.Events) != len(evs) {
					return nil, "", fmt.Errorf("event %d of the page: %s; and its raw bytes cannot be found: %v", i, reason, err)
				}
				raws = r.Events
			}
			ev.Reject, ev.Data = reason, raws[i]
		}
		evs[i] = ev
	}
	markRejects(evs)
	return evs, *p.PagingToken, nil
}

// decodeEventsOneByOne parses a page whose events are decoded one at a time.
func decodeEventsOneByOne[E any, P wireEvent[E]](tenant string, body []byte) ([]source.Event, string, error) {
	var p struct {
		Events      []json.RawMessage `json:"events"`
		PagingToken *string           `json:"pagingToken"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", err
	}
	if p.PagingToken == nil || *p.PagingToken == "" {
		return nil, "", errors.New("no pagingToken")
	}
	evs := make([]source.Event, len(p.Events))
	for i, raw := range p.Events {
		var e E
		err := json.Unmarshal(raw, &e) // on a type error, e holds the fields that did decode
		ev, reason := P(&e).event(tenant)
		if err != nil {
			reason = rejectInvalid + ": " + strings.TrimPrefix(err.Error(), "json: ")
		}
		if reason != "" {
			ev.Reject, ev.Data = reason, raw
		}
		evs[i] = ev
	}
	markRejects(evs)
	return evs, *p.PagingToken, nil
}

// markRejects gives every rejected event without a readable timestamp the
// Seq of the event before it in the page (the first of a page: of the next
// readable one; 0 when the page has none), so that Seq stays ordered and a
// replay of the same page gives the same Seq.
func markRejects(evs []source.Event) {
	var prev uint64
	havePrev := false
	for i := range evs {
		ev := &evs[i]
		if ev.Reject == "" || !ev.Timestamp.IsZero() {
			prev, havePrev = ev.Seq, true
			continue
		}
		if !havePrev {
			for _, next := range evs[i+1:] {
				if !next.Timestamp.IsZero() {
					prev = next.Seq
					break
				}
			}
			havePrev = true
		}
		ev.Seq = prev
	}
}

// missing returns the rejection of an event lacking the named fields, or "".
func missing(fields ...string) string {
	var names []string
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] == "" {
			names = append(names, fields[i])
		}
	}
	if len(names) == 0 {
		return ""
	}
	return rejectMissing + ": " + strings.Join(names, ", ")
}

func (e *suiteEvent) event(tenant string) (source.Event, string) {
	ev := source.Event{
		Locator:     e.Locator,
		RequestID:   e.RequestID,
		UserLocator: e.UserLocator,
		Tenant:      tenant,
		Type:        e.Type,
		Data:        rawData(e.Data),
		Flavor:      source.FlavorSuite,
	}
	reason := missing("locator", e.Locator, "type", e.Type, "timestamp", e.Timestamp)
	if e.Timestamp != "" {
		ts, err := parseTimestamp(e.Timestamp)
		if err != nil {
			if reason == "" {
				reason = fmt.Sprintf("%s: %q is not RFC 3339", rejectTimestamp, e.Timestamp)
			}
		} else {
			ev.Timestamp = ts.UTC().Truncate(time.Millisecond)
			ev.Seq = uint64(ev.Timestamp.UnixMilli())
		}
	}
	return ev, reason
}

func (e *classicEvent) event(tenant string) (source.Event, string) {
	id, stamp := scalarString(e.ID), scalarString(e.Timestamp)
	ev := source.Event{
		Locator:       id,
		Username:      e.Username,
		TransactionID: scalarString(e.TransactionID),
		Tenant:        tenant,
		Type:          e.Type,
		Data:          rawData(e.Data),
		Flavor:        source.FlavorClassic,
	}
	reason := missing("id", id, "type", e.Type, "timestamp", stamp)
	if stamp != "" {
		ms, err := strconv.ParseInt(stamp, 10, 64)
		if err != nil {
			if reason == "" {
				reason = fmt.Sprintf("%s: %s is not milliseconds since the epoch", rejectTimestamp, e.Timestamp)
			}
		} else {
			ev.Timestamp = time.UnixMilli(ms).UTC()
			ev.Seq = uint64(ms)
		}
	}
	return ev, reason
}

// scalarString returns a JSON string's value or a number's text; "" for null
// or absent.
func scalarString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] == '"' && len(raw) >= 2 {
		if q := raw[1 : len(raw)-1]; bytes.IndexByte(q, '\\') < 0 && utf8.Valid(q) {
			return bytesString(q) // raw is never changed: no copy
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return ""
	}
	return bytesString(raw)
}

// rawData returns the payload exactly as delivered, or {} when absent. It
// may point into the page's body (decodePageFast), which nothing changes.
func rawData(d json.RawMessage) json.RawMessage {
	if len(d) == 0 {
		return json.RawMessage(`{}`)
	}
	return d
}
