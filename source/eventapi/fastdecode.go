package eventapi

import (
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/tributary-cdc/tributary/source"
)

// decodePageFast reads a page in one pass over its bytes, without
// reflection: a validating scanner that finds the page's members and each
// event's fields, and converts them as decodePageReference does. The
// events' strings and Data point into body, which the caller hands over
// (it must never change afterwards; the client reads every body into a
// fresh buffer): one allocation per page for the events instead of one per
// field.
//
// It covers the pages the API sends. Whenever a page departs from that shape
// — invalid JSON, a field of the wrong JSON type, a key that matches a field
// only case-insensitively or carries escapes, an events member that is not
// an array of objects, a duplicate events member, a missing or non-string
// pagingToken, deep nesting — it returns ok false and decodePage falls back
// to decodePageReference (encoding/json), whose answer, error or rejects
// included, then stands. TestFastDecodeAgrees and FuzzDecodePage hold the
// two to the same result.
func decodePageFast(flavor, tenant string, body []byte) (evs []source.Event, next string, ok bool) {
	s := scanner{b: body}
	classic := flavor == source.FlavorClassic
	s.ws()
	if !s.eat('{') {
		return nil, "", false
	}
	var haveEvents, haveToken bool
	s.ws()
	if s.eat('}') {
		return nil, "", false // no pagingToken
	}
	for {
		key, ok := s.key()
		if !ok {
			return nil, "", false
		}
		switch key {
		case "events":
			if haveEvents {
				return nil, "", false
			}
			haveEvents = true
			if evs, ok = s.events(classic, tenant); !ok {
				return nil, "", false
			}
		case "pagingToken":
			start := s.i
			end, plain := s.str()
			if end < 0 || !plain || end-start <= 2 {
				return nil, "", false // null, another type, escapes or empty: the reference says
			}
			next = string(body[start+1 : end-1]) // copied: the token outlives the page
			s.i, haveToken = end, true
		default:
			if foldsTo(key, "events", "pagingToken") {
				return nil, "", false
			}
			if s.i = s.value(s.i, 0); s.i < 0 {
				return nil, "", false
			}
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		if !s.eat('}') {
			return nil, "", false
		}
		break
	}
	s.ws()
	if s.i != len(body) || !haveToken {
		return nil, "", false
	}
	if evs == nil {
		evs = []source.Event{}
	}
	markRejects(evs)
	return evs, next, true
}

// events reads the events array, each element an object.
func (s *scanner) events(classic bool, tenant string) ([]source.Event, bool) {
	s.ws()
	if !s.eat('[') {
		return nil, false // null or another type: the reference decides
	}
	// Size the slice once: count the array's elements cheaply is as dear as
	// reading them, so guess from the page's length (an event is rarely
	// under 200 bytes) and let append grow beyond.
	evs := make([]source.Event, 0, max(len(s.b)/400, 16))
	s.ws()
	if s.eat(']') {
		return evs, true
	}
	for {
		s.ws()
		start := s.i
		var ev source.Event
		var reason string
		var ok bool
		if classic {
			var e classicEvent
			if ok = s.classicFields(&e); ok {
				ev, reason = e.event(tenant)
			}
		} else {
			var e suiteEvent
			if ok = s.suiteFields(&e); ok {
				ev, reason = e.event(tenant)
			}
		}
		if !ok {
			return nil, false
		}
		if reason != "" {
			ev.Reject, ev.Data = reason, s.b[start:s.i:s.i]
		}
		evs = append(evs, ev)
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat(']') {
			return evs, true
		}
		return nil, false
	}
}

// suiteFields reads one suite event object into e.
func (s *scanner) suiteFields(e *suiteEvent) bool {
	return s.object(func(key string) bool {
		switch key {
		case "locator":
			return s.strField(&e.Locator)
		case "requestId":
			return s.strField(&e.RequestID)
		case "userLocator":
			return s.strField(&e.UserLocator)
		case "timestamp":
			return s.strField(&e.Timestamp)
		case "type":
			return s.strField(&e.Type)
		case "data":
			return s.rawField(&e.Data)
		}
		if foldsTo(key, "locator", "requestId", "userLocator", "timestamp", "type", "data") {
			return false
		}
		s.i = s.value(s.i, 0)
		return s.i >= 0
	})
}

// classicFields reads one classic event object into e.
func (s *scanner) classicFields(e *classicEvent) bool {
	return s.object(func(key string) bool {
		switch key {
		case "id":
			return s.rawField(&e.ID)
		case "timestamp":
			return s.rawField(&e.Timestamp)
		case "type":
			return s.strField(&e.Type)
		case "data":
			return s.rawField(&e.Data)
		case "username":
			return s.strField(&e.Username)
		case "transactionId":
			return s.rawField(&e.TransactionID)
		}
		if foldsTo(key, "id", "timestamp", "type", "data", "username", "transactionId") {
			return false
		}
		s.i = s.value(s.i, 0)
		return s.i >= 0
	})
}

// object reads an object at s.i, calling member with each key, the scanner
// at the member's value, which member must consume. Keys with escapes are
// refused (false): the reference decodes them.
func (s *scanner) object(member func(key string) bool) bool {
	if !s.eat('{') {
		return false
	}
	s.ws()
	if s.eat('}') {
		return true
	}
	for {
		key, ok := s.key()
		if !ok || !member(key) {
			return false
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		return s.eat('}')
	}
}

// key reads `"key" :` (whitespace around) and leaves s.i at the value.
func (s *scanner) key() (string, bool) {
	s.ws()
	start := s.i
	end, plain := s.str()
	if end < 0 || !plain {
		return "", false
	}
	s.i = end
	s.ws()
	if !s.eat(':') {
		return "", false
	}
	s.ws()
	return bytesString(s.b[start+1 : end-1]), true
}

// strField reads a string or null into *dst, like encoding/json into a
// string field (null leaves it as it is). A string with escapes or invalid
// UTF-8 is decoded by encoding/json (jsonscan's rules); other types: false.
func (s *scanner) strField(dst *string) bool {
	if s.i < len(s.b) && s.b[s.i] == 'n' {
		s.i = s.value(s.i, 0)
		return s.i >= 0
	}
	start := s.i
	end, plain := s.str()
	if end < 0 {
		return false
	}
	s.i = end
	if plain {
		*dst = bytesString(s.b[start+1 : end-1])
	} else {
		*dst = unquoteSlow(s.b[start:end])
	}
	return true
}

// rawField reads any value into *dst as its raw bytes (json.RawMessage).
func (s *scanner) rawField(dst *json.RawMessage) bool {
	start := s.i
	end := s.value(start, 0)
	if end < 0 {
		return false
	}
	s.i = end
	*dst = s.b[start:end:end]
	return true
}

// bytesString returns b as a string without copying; b must never change.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// unquoteSlow decodes a string literal with escapes or invalid UTF-8 the
// way encoding/json does.
func unquoteSlow(q []byte) string {
	var out string
	_ = json.Unmarshal(q, &out) // q was validated
	return out
}

// foldsTo reports whether key equals one of names case-insensitively but
// not exactly: encoding/json would fill that field, so the fast path leaves
// the page to it.
func foldsTo(key string, names ...string) bool {
	for _, n := range names {
		if len(key) == len(n) && key != n && strings.EqualFold(key, n) {
			return true
		}
	}
	return false
}

// scanner validates JSON as it reads it (RFC 8259, as encoding/json
// accepts it: invalid UTF-8 inside strings is allowed).
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() { s.i = skipWS(s.b, s.i) }

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// maxDepth bounds nesting; deeper values go to the reference decoder.
const maxDepth = 512

// value validates the value starting at i (no leading whitespace) and
// returns the index after it, or -1.
func (s *scanner) value(i, depth int) int {
	b := s.b
	if i >= len(b) || depth > maxDepth {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		end, _ := s.strAt(i)
		return end
	case c == '{':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return -1
			}
			if i, _ = s.strAt(i); i < 0 {
				return -1
			}
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ':' {
				return -1
			}
			if i = s.value(skipWS(b, i+1), depth+1); i < 0 {
				return -1
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return -1
			}
			if b[i] == '}' {
				return i + 1
			}
			if b[i] != ',' {
				return -1
			}
			i = skipWS(b, i+1)
		}
	case c == '[':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1
		}
		for {
			if i = s.value(i, depth+1); i < 0 {
				return -1
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return -1
			}
			if b[i] == ']' {
				return i + 1
			}
			if b[i] != ',' {
				return -1
			}
			i = skipWS(b, i+1)
		}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || ('0' <= c && c <= '9'):
		return number(b, i)
	}
	return -1
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

// number validates -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? at i.
func number(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return -1
		}
	}
	return i
}

// str validates the string at s.i (not consumed): see strAt.
func (s *scanner) str() (end int, plain bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return -1, false
	}
	return s.strAt(s.i)
}

// strAt validates the string whose quote is at b[i] and returns the index
// after its closing quote, and whether its content is plain: no escapes and
// valid UTF-8, so that its bytes are its value.
func (s *scanner) strAt(i int) (end int, plain bool) {
	b := s.b
	plain = true
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, plain
		case c == '\\':
			plain = false
			if i+1 >= len(b) {
				return -1, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return -1, false
				}
				i += 6
			default:
				return -1, false
			}
			continue
		case c < 0x20:
			return -1, false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				plain = false // encoding/json replaces it with U+FFFD
			}
			i += size
			continue
		}
		i++
	}
	return -1, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// parseTimestamp parses a suite timestamp as time.Parse(time.RFC3339Nano)
// does. The API's own form — YYYY-MM-DDTHH:MM:SS, an optional fraction of
// 1–9 digits, then Z — is read by hand (about ten times cheaper); any other
// form, and any field near a range limit, goes to time.Parse, so results and
// errors stay time.Parse's (TestParseTimestampAgreesWithTimeParse).
func parseTimestamp(v string) (time.Time, error) {
	if t, ok := parseCanonicalUTC(v); ok {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, v)
}

func parseCanonicalUTC(v string) (time.Time, bool) {
	if len(v) < 20 || v[len(v)-1] != 'Z' || v[4] != '-' || v[7] != '-' || v[10] != 'T' || v[13] != ':' || v[16] != ':' {
		return time.Time{}, false
	}
	num := func(s string) (int, bool) {
		n := 0
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(v[0:4])
	month, ok2 := num(v[5:7])
	day, ok3 := num(v[8:10])
	hour, ok4 := num(v[11:13])
	minute, ok5 := num(v[14:16])
	sec, ok6 := num(v[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > 28 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false // time.Parse knows the calendar's edges
	}
	nsec := 0
	switch frac := v[19 : len(v)-1]; {
	case frac == "":
	case frac[0] == '.' && len(frac) >= 2 && len(frac) <= 10:
		n, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	default:
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}
