package emulator

import (
	"encoding/json"
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"
)

// heapAfterGC returns the live heap in bytes.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkPagedRead reads a 200,000-event stream over HTTP (loopback TCP),
// 1000 events a page, decoding every page as a client would.
func BenchmarkPagedRead(b *testing.B) {
	for _, fl := range flavors {
		b.Run(fl, func(b *testing.B) {
			s, hs := newTestServer(b, Config{Flavor: fl, Seed: 71, Policies: 5000, Events: 200_000})
			total := s.Len()
			b.ResetTimer()
			start := time.Now()
			read := 0
			for i := 0; i < b.N; i++ {
				q := startQuery(s)
				q.Set("pageSize", "1000")
				for {
					code, body := get(b, hs, listPath(s), q, "")
					if code != http.StatusOK {
						b.Fatalf("status %d", code)
					}
					var p page
					if err := json.Unmarshal(body, &p); err != nil {
						b.Fatal(err)
					}
					read += len(p.Events)
					if len(p.Events) == 0 {
						break
					}
					q = url.Values{"pagingToken": {p.PagingToken}}
				}
			}
			b.StopTimer()
			if read != total*b.N {
				b.Fatalf("read %d events, want %d", read, total*b.N)
			}
			b.ReportMetric(float64(read)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkPreloadMillion preloads 1,000,000 events and reports the live
// heap they take (the target is under 1 GiB) and the preload rate.
func BenchmarkPreloadMillion(b *testing.B) {
	for _, fl := range flavors {
		b.Run(fl, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				before := heapAfterGC()
				start := time.Now()
				s, err := New(Config{Flavor: fl, Seed: 72, Policies: 20000, Events: 1_000_000})
				if err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				heap := heapAfterGC() - before
				b.ReportMetric(float64(heap)/(1<<20), "MiB")
				b.ReportMetric(float64(heap)/float64(s.Len()), "B/event")
				b.ReportMetric(float64(s.Len())/took.Seconds(), "events/s")
				if heap >= 1<<30 {
					b.Errorf("1M events take %d MiB, want under 1024", heap>>20)
				}
				runtime.KeepAlive(s)
				s.Close()
			}
		})
	}
}

// The memory budget, scaled down so it runs with the tests: 100,000 events
// must take under 1 KiB each (1M under 1 GiB).
func TestMemoryPerEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	before := heapAfterGC()
	s, err := New(Config{Seed: 73, Policies: 2000, Events: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	perEvent := float64(heapAfterGC()-before) / float64(s.Len())
	runtime.KeepAlive(s)
	s.Close()
	if perEvent >= 1024 {
		t.Errorf("%.0f bytes per event, want under 1024", perEvent)
	}
	t.Logf("%.0f bytes per preloaded event", perEvent)
}
