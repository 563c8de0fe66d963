// Package source defines what every source of events delivers: Events in
// order, grouped in Batches, each Batch ending at a Position from which the
// source can resume.
package source

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// Flavor names where an event came from; it is stored with every row.
const (
	FlavorSuite    = "suite"    // Socotra Insurance Suite event stream
	FlavorClassic  = "classic"  // Socotra Core (classic) event stream
	FlavorPostgres = "postgres" // a PostgreSQL table of events, read from its WAL
)

// Event is one event of the stream, in the form common to every source.
type Event struct {
	// Locator identifies the event: the suite's `locator` (a ULID) or the classic `id`.
	Locator string
	// RequestID is the suite's `requestId` (the API request that caused the event); empty for classic.
	RequestID string
	// UserLocator is the suite's `userLocator` (a UUID); empty for classic.
	UserLocator string
	// Username is the classic attributed stream's `username`; empty otherwise.
	Username string
	// TransactionID is the classic webhook's `transactionId`; empty otherwise.
	TransactionID string
	// Tenant is the tenant locator the event belongs to.
	Tenant string
	// Type is the event type, such as "policy.issue" or "billing.invoice.create".
	Type string
	// Timestamp is when the event happened, in UTC with millisecond precision.
	Timestamp time.Time
	// Data is the event's payload exactly as the source delivered it: valid
	// JSON unless Reject is set (sources check it; mapping.Options.TrustData
	// relies on it). It is never changed once delivered, by the source or
	// anyone else: it may share memory with the source's buffers and with
	// the mapped rows' strings.
	Data json.RawMessage
	// Flavor is one of the Flavor constants.
	Flavor string
	// Seq orders events within one source deterministically (for the API: the
	// timestamp in ms; for PostgreSQL: the commit LSN). Replays give the same Seq.
	Seq uint64
	// Reject, when not empty, says why the event cannot be read (a poison
	// event: no locator, type or time, invalid JSON, …): it is quarantined,
	// not mapped. Data then holds the event's raw bytes as the source got
	// them (the whole event, not only its payload), and the other fields
	// whatever could be read. Never drop such an event: deliver it with
	// Reject set.
	Reject string
}

// Kinds of reject: Event.Reject starts with one of these words, then ": " and
// the detail (RejectReason). They are the bounded values of the rejects
// table's kind column and of the metric of quarantined events.
const (
	RejectMissingField = "missing_field" // the event lacks its locator, type or time
	RejectInvalidJSON  = "invalid_json"  // not valid JSON, or not the JSON shape an event has
	RejectBadTime      = "bad_time"      // its time cannot be read
	RejectRefused      = "refused"       // ClickHouse refused its rows for their content
	RejectOther        = "other"         // any other reason
)

// RejectKinds lists every kind of reject.
var RejectKinds = []string{RejectMissingField, RejectInvalidJSON, RejectBadTime, RejectRefused, RejectOther}

// RejectReason returns the reason of a reject of kind with detail: "kind: detail".
func RejectReason(kind, detail string) string { return kind + ": " + detail }

// RejectKind returns the kind a reject reason starts with, RejectOther when
// it names none.
func RejectKind(reason string) string {
	k, _, _ := strings.Cut(reason, ":")
	for _, known := range RejectKinds {
		if k == known {
			return k
		}
	}
	return RejectOther
}

// Position is where a source stands, as an opaque string the source alone
// interprets (a paging token, an LSN). The empty Position means "from the
// configured start".
type Position string

// Batch is a run of events and the Position just after the last of them:
// opening the source at Position yields the events that follow the batch.
type Batch struct {
	Events   []Event
	Position Position
}

// Source delivers events strictly after the Position it was opened at.
//
// A source makes one attempt per call and classifies its failures with
// internal/fault (transient by default, Permanent, with a RetryAfter hint);
// it never loops on a failure itself. The pipeline retries a failed call with
// backoff and keeps the source's health. Background work a source does
// between calls (prefetching pages, streaming the WAL) stops at its first
// failure and hands that failure to the next Read; the Read after it starts
// the work again (reconnects, refetches) from where the last delivered batch
// ended.
type Source interface {
	// Open prepares reading after from (empty: from the configured start).
	// The pipeline calls it until it succeeds, before Read.
	Open(ctx context.Context, from Position) error
	// Read blocks until it has at least one event, or a new Position to report
	// (an empty batch that still advances, e.g. a caught-up paging token or an
	// idle WAL), or ctx is done. It returns at most max events. Read is not safe
	// for concurrent use; the pipeline calls it from one goroutine. Events it
	// cannot read are delivered with Event.Reject set, never skipped.
	Read(ctx context.Context, max int) (Batch, error)
	// Ack tells the source that every event up to upTo is durable in the sink
	// and its checkpoint saved. It is idempotent, and safe to call concurrently
	// with Read.
	Ack(ctx context.Context, upTo Position) error
	// Close releases the source's connections. It is safe to call once after Open.
	Close(ctx context.Context) error
}

// Prober is a Source that can check, with one authenticated request, that
// it can read at all (its address, its credentials, its tenant) before the
// pipeline prepares anything else: a wrong token then stops the process
// before any ClickHouse table is created. Probe makes one attempt and
// classifies its failure like Read (internal/fault); the pipeline retries a
// transient one. It is optional: the pipeline calls it, when the source has
// it, first of all.
type Prober interface {
	Probe(ctx context.Context) error
}
