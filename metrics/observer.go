package metrics

import (
	"sync"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/source"
)

// maxPending bounds the per-class counts waiting for their batch to be
// written; more batches than this are never in flight.
const maxPending = 1024

// PipelineObserver records what a pipeline does in Metrics. Its method set is
// pipeline.Observer's (the test asserts it), so that main can pass
// m.PipelineObserver() to pipeline.New. It is safe for concurrent use.
type PipelineObserver struct {
	m *Metrics

	mu sync.Mutex
	// pending holds, in order, the events per class of each mapped batch
	// whose rows were not written yet: batches are written in the order
	// they were mapped.
	pending []map[string]int
}

// PipelineObserver returns an observer that records into m.
func (m *Metrics) PipelineObserver() *PipelineObserver { return &PipelineObserver{m: m} }

// BatchRead counts the events read from the source by type class.
func (o *PipelineObserver) BatchRead(events []source.Event) {
	counts := map[string]int{}
	for i := range events {
		counts[mapping.TypeClass(events[i].Type)]++
	}
	for class, n := range counts {
		o.m.SourceEventsRead.WithLabelValues(class).Add(float64(n))
	}
}

// Mapped counts unknown and unparsable events and remembers the batch's
// classes until its rows are written.
func (o *PipelineObserver) Mapped(stats mapping.Stats) {
	o.m.MappingUnknownEvents.Add(float64(stats.Unknown))
	o.m.MappingParseErrors.Add(float64(stats.ParseErrors))
	if stats.Events == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.pending) >= maxPending {
		o.pending = o.pending[1:]
	}
	o.pending = append(o.pending, stats.ByClass)
}

// BatchWritten counts the events and rows ClickHouse accepted and records
// the batch's size, write duration and end-to-end lag.
func (o *PipelineObserver) BatchWritten(events int, tableRows map[string]int, d time.Duration, lastEvent time.Time) {
	o.mu.Lock()
	var byClass map[string]int
	if len(o.pending) > 0 {
		byClass, o.pending = o.pending[0], o.pending[1:]
	}
	o.mu.Unlock()
	counted := 0
	for class, n := range byClass {
		o.m.SinkEventsWritten.WithLabelValues(class).Add(float64(n))
		counted += n
	}
	if counted < events {
		o.m.SinkEventsWritten.WithLabelValues(mapping.ClassOther).Add(float64(events - counted))
	}
	for table, n := range tableRows {
		o.m.SinkRowsWritten.WithLabelValues(table).Add(float64(n))
	}
	o.m.ObserveBatch(events, d, lastEvent)
}

// CheckpointSaved records a saved checkpoint.
func (o *PipelineObserver) CheckpointSaved(cp checkpoint.Checkpoint) {
	at := cp.SavedAt
	if at.IsZero() {
		at = o.m.now()
	}
	o.m.CheckpointSaved(at, cp.Events)
}

// Attempt counts one call of a component; see Metrics.Attempt.
func (o *PipelineObserver) Attempt(component, outcome string) { o.m.Attempt(component, outcome) }

// Failure counts one failure not retried away; see Metrics.Failure.
func (o *PipelineObserver) Failure(component string) { o.m.Failure(component) }

// Rejected counts n quarantined events of a reason kind (mapping.RejectKinds).
func (o *PipelineObserver) Rejected(kind string, n int) {
	o.m.EventsRejected.WithLabelValues(boundedOr(kind, mapping.RejectKinds, mapping.RejectOther)).Add(float64(n))
}

// Window records how many batches the window holds.
func (o *PipelineObserver) Window(batches int) { o.m.PipelineWindowBatches.Set(float64(batches)) }

// PGRepl records the PostgreSQL source's sampled state: the slot's lag in
// bytes (negative: not sampled yet, left as it is), the confirmed flush LSN,
// and the cumulative number of rows read, of which the counter
// gets the increase since the previous call (all of it after a restart of
// the source's count).
func (m *Metrics) PGRepl(slotLagBytes int64, confirmedLSN uint64, rowsTotal uint64) {
	if slotLagBytes >= 0 {
		m.PGReplSlotLagBytes.Set(float64(slotLagBytes))
	}
	if confirmedLSN > 0 {
		m.PGReplConfirmedFlushLSN.Set(float64(confirmedLSN))
	}
	m.pgMu.Lock()
	defer m.pgMu.Unlock()
	switch {
	case rowsTotal >= m.pgRows:
		m.PGReplRows.Add(float64(rowsTotal - m.pgRows))
	default: // the source restarted and counts from zero again
		m.PGReplRows.Add(float64(rowsTotal))
	}
	m.pgRows = rowsTotal
}

// APIBudget records the API source's sampled request budget: its current
// limit, the requests under way, the cumulative time throttled and requests
// by outcome (the counters get the increase since the previous call), and
// its backfill windows (total 0: no backfill, left as it is).
func (m *Metrics) APIBudget(limit float64, inFlight int, throttled time.Duration, requests map[string]uint64, windowsTotal, windowsDone int) {
	m.SourceAPIConcurrency.Set(limit)
	m.SourceAPIInFlight.Set(float64(inFlight))
	if windowsTotal > 0 {
		m.SourceBackfillWindows.WithLabelValues("total").Set(float64(windowsTotal))
		m.SourceBackfillWindows.WithLabelValues("done").Set(float64(windowsDone))
	}
	m.apiMu.Lock()
	defer m.apiMu.Unlock()
	if m.apiRequests == nil {
		m.apiRequests = map[string]uint64{}
	}
	for _, o := range APIOutcomes {
		if n := requests[o]; n > m.apiRequests[o] {
			m.SourceAPIRequests.WithLabelValues(o).Add(float64(n - m.apiRequests[o]))
			m.apiRequests[o] = n
		}
	}
	if throttled > m.apiThrottled {
		m.SourceAPIThrottled.Add((throttled - m.apiThrottled).Seconds())
		m.apiThrottled = throttled
	}
}
