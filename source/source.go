// Package source defines what every source of events delivers: Events in
// order, grouped in Batches, each Batch ending at a Position from which the
// source can resume.
package source

import (
	"context"
	"encoding/json"
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
	// Data is the event's payload exactly as the source delivered it.
	Data json.RawMessage
	// Flavor is one of the Flavor constants.
	Flavor string
	// Seq orders events within one source deterministically (for the API: the
	// timestamp in ms; for PostgreSQL: the commit LSN). Replays give the same Seq.
	Seq uint64
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
type Source interface {
	// Open prepares reading after from (empty: from the configured start).
	// It is called once, before Read.
	Open(ctx context.Context, from Position) error
	// Read blocks until it has at least one event, or a new Position to report
	// (an empty batch that still advances, e.g. a caught-up paging token or an
	// idle WAL), or ctx is done. It returns at most max events. Read is not safe
	// for concurrent use; the pipeline calls it from one goroutine.
	Read(ctx context.Context, max int) (Batch, error)
	// Ack tells the source that every event up to upTo is durable in the sink
	// and its checkpoint saved. It is idempotent, and safe to call concurrently
	// with Read.
	Ack(ctx context.Context, upTo Position) error
	// Close releases the source's connections. It is safe to call once after Open.
	Close(ctx context.Context) error
}
