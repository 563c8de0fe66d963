package mapping

import (
	"time"

	"github.com/tributary-cdc/tributary/source"
)

// TableRejects is the quarantine: one row per event that could not be read
// or stored, with its raw bytes and the reason. Nothing is ever skipped
// without a row here.
const TableRejects = "_tributary_rejects"

// Kinds of reject (see source.RejectKinds): the values of the kind column
// and of the reason label of tributary_events_rejected_total.
const (
	RejectMissingField = source.RejectMissingField
	RejectInvalidJSON  = source.RejectInvalidJSON
	RejectBadTime      = source.RejectBadTime
	RejectRefused      = source.RejectRefused
	RejectOther        = source.RejectOther
)

// RejectKinds lists every kind, for metrics.
var RejectKinds = source.RejectKinds

// RejectReason returns the reason of a reject of kind with detail.
func RejectReason(kind, detail string) string { return source.RejectReason(kind, detail) }

// RejectKind returns the kind a reject reason starts with.
func RejectKind(reason string) string { return source.RejectKind(reason) }

// Column positions of the rejects table.
const (
	rjSource = iota
	rjFlavor
	rjKind
	rjReason
	rjEventLocator
	rjEventType
	rjTenant
	rjEventTime
	rjSourcePosition
	rjPosition
	rjRaw
	rjVersion
	rjIngestedAt
	rjColumnCount
)

func rejectsTable() Table {
	return Table{
		Name: TableRejects,
		Comment: "The quarantine: one row per event that could not be read or stored, with its raw bytes and the reason; " +
			"the stream went on without it. Read with FINAL; see docs/schema.md for review and replay.",
		Columns: []Column{
			{"_source", LowString, commentSource},
			{"flavor", LowString, "Where the event came from: suite, classic or postgres."},
			{"kind", LowString, "Why, in a word: missing_field, invalid_json (not JSON, or not the shape of an event), bad_time (the source could not read it), refused (ClickHouse refused its rows), other."},
			{"reason", String, "Why, in full: the source's or ClickHouse's message."},
			{"event_locator", String, "The event's locator, when it had one."},
			{"event_type", LowString, "The event's type, when it had one."},
			{"tenant", LowString, "The tenant the event belongs to."},
			{"event_time", String, "The event's time as read (RFC 3339, UTC, milliseconds), empty when it had none. Text, since a time the server cannot hold is one reason to be here."},
			{"source_position", String, "Where the source stood after the batch that held the event (a paging token or an LSN): resuming there reads what follows it."},
			{"_position", String, "The event's Seq as the source orders it, as in events._position."},
			{"raw", String, "The event's raw bytes as the source delivered them (for an event ClickHouse refused: the event as JSON), for review and replay."},
			{"_version", UInt64, "The event's Seq: a replayed reject collapses onto itself."},
			{"_ingested_at", Time, commentIngestedAt},
		},
		OrderBy: []string{"_source", "event_locator", "cityHash64(raw)"},
		Version: "_version",
	}
}

// mapReject appends e's row to the rejects table.
func mapReject(rj *TableRows, e *source.Event, opts Options, ingested time.Time) {
	v := rj.Values
	evTime := ""
	if !e.Timestamp.IsZero() {
		evTime = e.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	v[rjSource].str(opts.Pipeline)
	v[rjFlavor].str(e.Flavor)
	v[rjKind].str(RejectKind(e.Reject))
	v[rjReason].str(e.Reject)
	v[rjEventLocator].str(e.Locator)
	v[rjEventType].str(e.Type)
	v[rjTenant].str(e.Tenant)
	v[rjEventTime].str(evTime)
	v[rjSourcePosition].str(opts.Position)
	v[rjPosition].str(position(e))
	v[rjRaw].str(string(e.Data))
	v[rjVersion].uint64(e.Seq)
	v[rjIngestedAt].time(ingested)
	rj.n++
}
