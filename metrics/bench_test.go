package metrics

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/source"
)

// BenchmarkObserverBatch measures the metrics cost of one 10,000-event batch
// through the pipeline observer: read, mapped, written, checkpointed.
func BenchmarkObserverBatch(b *testing.B) {
	types := []string{"policy.issue", "quote.create", "billing.invoice.create", "account.create", "policy.cancellation.issue"}
	evs := make([]source.Event, 10000)
	byClass := map[string]int{}
	for i := range evs {
		evs[i] = source.Event{Type: types[i%len(types)], Timestamp: time.Now()}
		byClass[mapping.TypeClass(evs[i].Type)]++
	}
	rows := map[string]int{"events": len(evs), "event_policies": 6000}
	o := New("v", "c").PipelineObserver()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.BatchRead(evs)
		o.Mapped(mapping.Stats{Events: len(evs), ByClass: byClass})
		o.BatchWritten(len(evs), rows, 50*time.Millisecond, evs[len(evs)-1].Timestamp)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}

// BenchmarkScrape measures one /metrics scrape of a populated registry.
func BenchmarkScrape(b *testing.B) {
	m := New("v", "c")
	for _, c := range mapping.Classes {
		m.SourceEventsRead.WithLabelValues(c).Inc()
		m.SinkEventsWritten.WithLabelValues(c).Inc()
	}
	for _, table := range []string{"events", "event_policies", "policy_status_changes"} {
		m.SinkRowsWritten.WithLabelValues(table).Inc()
		m.SinkInsertDuration.WithLabelValues(table).Observe(0.1)
	}
	h := promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	b.ReportAllocs()
	b.ResetTimer()
	size := 0
	for i := 0; i < b.N; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("scrape answered %d", w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}
