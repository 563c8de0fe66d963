package emulator

import (
	"encoding/json"
	"sort"
	"sync"
	"time"
)

// Event is one event of the emulated stream, as served.
type Event struct {
	// Locator is the suite `locator` (a ULID) or the classic `id` (a UUID).
	Locator string
	// RequestID is the suite `requestId` (a ULID); empty for classic.
	RequestID string
	// UserLocator is the suite `userLocator` (a UUID); empty for classic.
	UserLocator string
	// Username is the classic attributed stream's `username`; empty for suite.
	Username string
	// TransactionID is the classic webhook's `transactionId` (a UUID, one per
	// request); empty for suite.
	TransactionID string
	// Tenant is the tenant locator.
	Tenant string
	// Type is the event type.
	Type string
	// Timestamp is when the event happened, UTC, millisecond precision.
	Timestamp time.Time
	// Data is the exact bytes served as `data`.
	Data json.RawMessage
}

// record is an event in its compact stored form: the JSON object served for
// it, pre-encoded, plus what indexes and filters need.
type record struct {
	raw     []byte // the event's JSON object as served (without username)
	ms      int64  // timestamp, milliseconds since the epoch
	req     uint32 // index into store.requests
	typ     uint16 // index into store.types
	user    uint8  // index into store.users
	dataOff uint16 // data is raw[dataOff : len(raw)-1]
}

func (r *record) data() []byte { return r.raw[r.dataOff : len(r.raw)-1] }

// request is one API request that caused events.
type request struct {
	id    string // suite requestId (ULID) or classic transactionId (UUID)
	first uint32 // index of its first event; its events are contiguous
	n     uint32
}

// user is someone (or the system) causing requests.
type user struct {
	locator string // UUID
	name    string // classic username
}

// store holds the stream in order. Records are immutable once appended and
// the slices only grow, so readers may keep a snapshot taken under mu.
type store struct {
	flavor string
	tenant string

	mu       sync.RWMutex
	recs     []record
	requests []request

	types   []string
	typeIdx map[string]uint16
	users   []user

	slab []byte // arena the records' raw bytes are carved from
}

func newStore(flavor, tenant string, users []user) *store {
	return &store{flavor: flavor, tenant: tenant, users: users, typeIdx: map[string]uint16{}}
}

const slabSize = 1 << 20

// alloc returns a zero-length slice with capacity n carved from the arena.
// Called only by the single writer.
func (s *store) alloc(n int) []byte {
	if n > slabSize/4 {
		return make([]byte, 0, n)
	}
	if cap(s.slab)-len(s.slab) < n {
		s.slab = make([]byte, 0, slabSize)
	}
	b := s.slab[len(s.slab) : len(s.slab) : len(s.slab)+n]
	s.slab = s.slab[:len(s.slab)+n]
	return b
}

// typeID interns an event type. Called only by the single writer.
func (s *store) typeID(t string) uint16 {
	if id, ok := s.typeIdx[t]; ok {
		return id
	}
	s.mu.Lock()
	id := uint16(len(s.types))
	s.types = append(s.types, t)
	s.mu.Unlock()
	s.typeIdx[t] = id
	return id
}

// snapshot returns the records and requests appended so far.
func (s *store) snapshot() ([]record, []request) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.recs, s.requests
}

// lookupType returns the index of type t, or false when no event has it.
func (s *store) lookupType(t string) (uint16, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, n := range s.types {
		if n == t {
			return uint16(i), true
		}
	}
	return 0, false
}

// publish appends records and requests; they become visible to readers at once.
func (s *store) publish(recs []record, reqs []request) {
	s.mu.Lock()
	s.recs = append(s.recs, recs...)
	s.requests = append(s.requests, reqs...)
	s.mu.Unlock()
}

// locatorOf returns the event locator inside raw.
func (s *store) locatorOf(r *record) string {
	if s.flavor == FlavorClassic {
		return string(r.raw[len(`{"id":"`) : len(`{"id":"`)+36])
	}
	return string(r.raw[len(`{"locator":"`) : len(`{"locator":"`)+26])
}

func (s *store) locatorBytes(r *record) []byte {
	if s.flavor == FlavorClassic {
		return r.raw[len(`{"id":"`) : len(`{"id":"`)+36]
	}
	return r.raw[len(`{"locator":"`) : len(`{"locator":"`)+26]
}

// find returns the index of the event with locator loc. Locators ascend with
// the stream, so this is a binary search.
func (s *store) find(recs []record, loc string) (int, bool) {
	i := sort.Search(len(recs), func(i int) bool { return string(s.locatorBytes(&recs[i])) >= loc })
	if i < len(recs) && string(s.locatorBytes(&recs[i])) == loc {
		return i, true
	}
	return 0, false
}

// findRequest returns the request with id; suite request IDs ascend with the stream.
func findRequest(reqs []request, id string) (request, bool) {
	i := sort.Search(len(reqs), func(i int) bool { return reqs[i].id >= id })
	if i < len(reqs) && reqs[i].id == id {
		return reqs[i], true
	}
	return request{}, false
}

// event expands a record into an Event.
func (s *store) event(r *record, reqs []request, types []string) Event {
	e := Event{
		Locator:   s.locatorOf(r),
		Tenant:    s.tenant,
		Type:      types[r.typ],
		Timestamp: time.UnixMilli(r.ms).UTC(),
		Data:      append(json.RawMessage(nil), r.data()...),
	}
	u := s.users[r.user]
	if s.flavor == FlavorClassic {
		e.Username = u.name
		e.TransactionID = reqs[r.req].id
	} else {
		e.RequestID = reqs[r.req].id
		e.UserLocator = u.locator
	}
	return e
}

// events expands records [from, to) into Events.
func (s *store) events(from, to int) []Event {
	recs, reqs := s.snapshot()
	s.mu.RLock()
	types := s.types
	s.mu.RUnlock()
	if to > len(recs) {
		to = len(recs)
	}
	out := make([]Event, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, s.event(&recs[i], reqs, types))
	}
	return out
}

// firstAtOrAfter returns the index of the first record with ms >= ms.
func firstAtOrAfter(recs []record, ms int64) int {
	return sort.Search(len(recs), func(i int) bool { return recs[i].ms >= ms })
}
