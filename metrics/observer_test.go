package metrics

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/pipeline"
	"github.com/tributary-cdc/tributary/source"
)

// The observer records what the pipeline reports (the pipeline does not
// import this package).
var _ pipeline.Observer = (*PipelineObserver)(nil)

func events(types ...string) []source.Event {
	out := make([]source.Event, len(types))
	for i, t := range types {
		out[i] = source.Event{Type: t, Timestamp: time.Unix(1700000000, 0)}
	}
	return out
}

func TestPipelineObserverCountsByClass(t *testing.T) {
	m := New("v", "c")
	now := time.Date(2026, 11, 22, 22, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return now }
	o := m.PipelineObserver()

	// Two batches mapped before the first is written, as when pipelined;
	// the empty one in between is mapped but never written.
	b1 := events("policy.issue", "policy.issue", "billing.invoice.create")
	b2 := events("quote.create")
	rows1 := mapping.NewRows()
	mapping.Map(source.Batch{Events: b1}, mapping.Options{}, rows1)
	o.BatchRead(b1)
	o.Mapped(mapping.Stats{Events: 3, ByClass: map[string]int{mapping.TypeClass("policy.issue"): 2, mapping.TypeClass("billing.invoice.create"): 1}})
	o.Mapped(mapping.Stats{})
	o.BatchRead(b2)
	o.Mapped(mapping.Stats{Events: 1, Unknown: 1, ParseErrors: 1, ByClass: map[string]int{mapping.TypeClass("quote.create"): 1}})
	o.BatchWritten(3, rows1.Counts(), 40*time.Millisecond, now.Add(-30*time.Second))
	o.BatchWritten(1, nil, 10*time.Millisecond, now.Add(-10*time.Second))
	o.CheckpointSaved(checkpoint.Checkpoint{Events: 4, SavedAt: now.Add(-5 * time.Second)})
	o.Attempt(ComponentSink, OutcomeTransient)
	o.Attempt(ComponentSource, OutcomeOK)
	o.Attempt(ComponentSource, "bogus")
	o.Failure(ComponentSink)
	o.Rejected(mapping.RejectRefused, 2)
	o.Rejected("bogus", 1)
	o.Window(3)

	policy, billing, quote := mapping.TypeClass("policy.issue"), mapping.TypeClass("billing.invoice.create"), mapping.TypeClass("quote.create")
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"read " + policy, testutil.ToFloat64(m.SourceEventsRead.WithLabelValues(policy)), 2},
		{"read " + billing, testutil.ToFloat64(m.SourceEventsRead.WithLabelValues(billing)), 1},
		{"written " + policy, testutil.ToFloat64(m.SinkEventsWritten.WithLabelValues(policy)), 2},
		{"written " + quote, testutil.ToFloat64(m.SinkEventsWritten.WithLabelValues(quote)), 1},
		{"rows events", testutil.ToFloat64(m.SinkRowsWritten.WithLabelValues("events")), float64(rows1.ByTable["events"].Len())},
		{"unknown", testutil.ToFloat64(m.MappingUnknownEvents), 1},
		{"parse errors", testutil.ToFloat64(m.MappingParseErrors), 1},
		{"batches", testutil.ToFloat64(m.PipelineBatches), 2},
		{"lag", testutil.ToFloat64(m.PipelineLag), 10},
		{"checkpoint events", testutil.ToFloat64(m.CheckpointEvents), 4},
		{"checkpoint saves", testutil.ToFloat64(m.CheckpointSaves), 1},
		{"checkpoint age", m.CheckpointAge().Seconds(), 5},
		{"attempts sink transient", testutil.ToFloat64(m.PipelineAttempts.WithLabelValues("sink", "transient")), 1},
		{"attempts source ok", testutil.ToFloat64(m.PipelineAttempts.WithLabelValues("source", "ok")), 1},
		{"attempts source other (bounded)", testutil.ToFloat64(m.PipelineAttempts.WithLabelValues("source", "other")), 1},
		{"sink unhealthy", testutil.ToFloat64(m.PipelineComponentHealthy.WithLabelValues("sink")), 0},
		{"failures sink", testutil.ToFloat64(m.PipelineFailures.WithLabelValues("sink")), 1},
		{"rejected refused", testutil.ToFloat64(m.EventsRejected.WithLabelValues("refused")), 2},
		{"rejected other (bounded)", testutil.ToFloat64(m.EventsRejected.WithLabelValues("other")), 1},
		{"window", testutil.ToFloat64(m.PipelineWindowBatches), 3},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if rows1.ByTable["events"].Len() != 3 {
		t.Errorf("mapping produced %d events rows for 3 events", rows1.ByTable["events"].Len())
	}
}

func TestPipelineObserverConcurrent(t *testing.T) {
	m := New("v", "c")
	o := m.PipelineObserver()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				o.BatchRead(events("policy.issue"))
				o.Mapped(mapping.Stats{Events: 1, ByClass: map[string]int{"policy": 1}})
				o.BatchWritten(1, nil, time.Millisecond, time.Now())
				o.Attempt(ComponentSource, OutcomeTransient)
			}
		}()
	}
	wg.Wait()
	if got := testutil.ToFloat64(m.SinkEventsWritten.WithLabelValues("policy")); got != 800 {
		t.Errorf("written = %v, want 800", got)
	}
	if got := testutil.ToFloat64(m.PipelineAttempts.WithLabelValues("source", "transient")); got != 800 {
		t.Errorf("attempts = %v, want 800", got)
	}
}

func TestPGRepl(t *testing.T) {
	m := New("v", "c")
	calls := []struct {
		lag       int64
		lsn, rows uint64
		wantLag   float64
		wantLSN   float64
		wantRows  float64
	}{
		{-1, 0, 0, 0, 0, 0},
		{4096, 0x16B3748, 10, 4096, 0x16B3748, 10},
		{-1, 0x16B3800, 25, 4096, 0x16B3800, 25},
		{0, 0x16B3900, 25, 0, 0x16B3900, 25},
		{0, 0x16B3900, 3, 0, 0x16B3900, 28}, // a restarted source counts from 0 again
		{0, 0x16B3900, 5, 0, 0x16B3900, 30},
	}
	for i, c := range calls {
		m.PGRepl(c.lag, c.lsn, c.rows)
		if got := testutil.ToFloat64(m.PGReplSlotLagBytes); got != c.wantLag {
			t.Errorf("call %d: slot lag %v, want %v", i, got, c.wantLag)
		}
		if got := testutil.ToFloat64(m.PGReplConfirmedFlushLSN); got != c.wantLSN {
			t.Errorf("call %d: confirmed LSN %v, want %v", i, got, c.wantLSN)
		}
		if got := testutil.ToFloat64(m.PGReplRows); got != c.wantRows {
			t.Errorf("call %d: rows %v, want %v", i, got, c.wantRows)
		}
	}
}
