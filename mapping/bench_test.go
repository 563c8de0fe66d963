package mapping

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/source"
)

// benchEvents is the batch every benchmark works on: 1000 events of the
// sample mix, as the API source delivers them.
const benchBatch = 1000

// envelope is an event as the suite API sends it; BenchmarkDecodeOnly decodes
// into it to give the floor every source pays before mapping starts.
type envelope struct {
	Locator     string          `json:"locator"`
	RequestID   string          `json:"requestId"`
	UserLocator string          `json:"userLocator"`
	Timestamp   time.Time       `json:"timestamp"`
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data"`
}

func benchWire(b *testing.B) [][]byte {
	events := sampleEvents(benchBatch)
	wire := make([][]byte, len(events))
	for i, e := range events {
		raw, err := json.Marshal(envelope{e.Locator, e.RequestID, e.UserLocator, e.Timestamp, e.Type, e.Data})
		if err != nil {
			b.Fatal(err)
		}
		wire[i] = raw
	}
	return wire
}

func reportEvents(b *testing.B) {
	b.ReportMetric(float64(b.N)*benchBatch/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkMap maps batches of 1000 events of the sample mix (a third billing
// events with policy lists, status updates, transactions, classic events).
func BenchmarkMap(b *testing.B) {
	batch := source.Batch{Events: sampleEvents(benchBatch), Position: "tok"}
	opts := Options{Pipeline: "bench", IngestedAt: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		Map(batch, opts, NewRows())
	}
	reportEvents(b)
}

// BenchmarkDecodeOnly is the baseline for BenchmarkMap: it only decodes the
// API's JSON envelopes of the same 1000 events (what a source must do anyway).
func BenchmarkDecodeOnly(b *testing.B) {
	wire := benchWire(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, raw := range wire {
			var e envelope
			if err := json.Unmarshal(raw, &e); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportEvents(b)
}

// BenchmarkDecodeDataGeneric decodes only the payloads of the same events into
// map[string]any: the cost of the reflection-heavy way Map avoids.
func BenchmarkDecodeDataGeneric(b *testing.B) {
	events := sampleEvents(benchBatch)
	b.ReportAllocs()
	for b.Loop() {
		for _, e := range events {
			var m map[string]any
			if err := json.Unmarshal(e.Data, &m); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportEvents(b)
}
