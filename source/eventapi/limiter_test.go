package eventapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestLimiterAIMD: the limit starts at the maximum, halves once per round of
// failures (requests sent before the last decrease do not halve it again),
// never below 1, and grows back by about one per round of successes.
func TestLimiterAIMD(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(16)
		ctx := context.Background()
		take := func(n int) []func(string, time.Duration) {
			var rs []func(string, time.Duration)
			for range n {
				r, err := l.acquire(ctx)
				if err != nil {
					t.Fatal(err)
				}
				rs = append(rs, r)
			}
			return rs
		}
		if got := l.stats().Limit; got != 16 {
			t.Fatalf("initial limit %v, want 16", got)
		}
		// 16 requests sent together all fail: one halving, not sixteen.
		rs := take(16)
		time.Sleep(time.Millisecond)
		for _, r := range rs {
			r(OutcomeOverload, 0)
		}
		if got := l.stats().Limit; got != 8 {
			t.Fatalf("after one round of failures: limit %v, want 8", got)
		}
		// Only 8 slots now: a ninth acquire waits until one is released.
		rs = take(8)
		got := make(chan struct{})
		go func() {
			r, err := l.acquire(ctx)
			if err == nil {
				r(OutcomeOK, 0)
			}
			close(got)
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("a ninth request started with a limit of 8")
		default:
		}
		rs[0](OutcomeOK, 0)
		<-got
		for _, r := range rs[1:] {
			r(OutcomeOK, 0)
		}
		// Failures in successive rounds halve down to 1, never below.
		for range 6 {
			time.Sleep(time.Millisecond)
			r := take(1)[0]
			time.Sleep(time.Millisecond)
			r(OutcomeOverload, 0)
		}
		if got := l.stats().Limit; got != 1 {
			t.Fatalf("after repeated failures: limit %v, want 1", got)
		}
		// Additive increase: 1/limit per success, about one slot per round
		// of limit requests: from 1 to 4 takes 1+2+3 rounds' worth, a few
		// more since the increments shrink as the limit grows.
		n := 0
		for l.stats().Limit < 4 {
			take(1)[0](OutcomeOK, 0)
			n++
		}
		if n < 6 || n > 8 {
			t.Fatalf("from 1 to 4 took %d successes, want 6..8", n)
		}
		// Cancelled requests say nothing about the server.
		before := l.stats().Limit
		take(1)[0](OutcomeCancelled, 0)
		s := l.stats()
		if s.Limit != before || s.InFlight != 0 {
			t.Fatalf("after a cancelled request: %+v, limit before %v", s, before)
		}
		if s.Requests[OutcomeOverload] != 22 || s.Requests[OutcomeCancelled] != 1 {
			t.Fatalf("requests by outcome: %v", s.Requests)
		}
	})
}

// TestLimiterThrottlePausesAll: a 429 pauses every request for its
// Retry-After, including those waiting for a slot, and the pause is
// counted as time throttled; a later 429 extends the pause only by what it
// adds.
func TestLimiterThrottlePausesAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(4)
		ctx := context.Background()
		r, _ := l.acquire(ctx)
		start := time.Now()
		r(OutcomeThrottled, 3*time.Second)
		var mu sync.Mutex
		var started []time.Duration
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := l.acquire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				started = append(started, time.Since(start))
				mu.Unlock()
				r(OutcomeOK, 0)
			}()
		}
		time.Sleep(time.Second)
		// A second 429 one second later, asking for 4 s, extends the pause to 5 s.
		l.release(time.Now(), OutcomeThrottled, 4*time.Second)
		l.mu.Lock()
		l.inFlight++ // release above returned a slot never taken
		l.mu.Unlock()
		wg.Wait()
		for _, d := range started {
			if d < 5*time.Second {
				t.Errorf("a request started %v after the first 429, within the pause", d)
			}
		}
		if got := l.stats().Throttled; got != 5*time.Second {
			t.Errorf("throttled %v, want 5s", got)
		}
		// Without Retry-After, the pause is the default.
		r, _ = l.acquire(ctx)
		at := time.Now()
		r(OutcomeThrottled, 0)
		r, _ = l.acquire(ctx)
		if d := time.Since(at); d != defaultThrottlePause {
			t.Errorf("after a 429 without Retry-After the next request waited %v, want %v", d, defaultThrottlePause)
		}
		r(OutcomeOK, 0)
	})
}

// TestLimiterAcquireHonoursContext: a request waiting for a slot or for the
// end of a pause gives up when its context ends.
func TestLimiterAcquireHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(1)
		r, _ := l.acquire(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := l.acquire(ctx); err != context.DeadlineExceeded {
			t.Fatalf("waiting for a slot: %v, want deadline exceeded", err)
		}
		r(OutcomeThrottled, time.Minute)
		ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
		defer cancel2()
		if _, err := l.acquire(ctx2); err != context.DeadlineExceeded {
			t.Fatalf("waiting for a pause: %v, want deadline exceeded", err)
		}
	})
}

// TestClient429PausesEveryRequest: through the HTTP client, a 429 answered
// to one request holds back every other request of the same API (pages and
// look-ups share the budget) until its Retry-After has passed. Real time:
// the assertion is a lower bound, so a slow machine cannot fail it.
func TestClient429PausesEveryRequest(t *testing.T) {
	var (
		mu        sync.Mutex
		throttled time.Time // when the 429 was answered
		early     []time.Duration
		n         atomic.Int32
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			mu.Lock()
			throttled = time.Now()
			mu.Unlock()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		mu.Lock()
		if d := time.Since(throttled); d < time.Second {
			early = append(early, d)
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"invoiceItems":[]}`))
	}))
	defer srv.Close()
	cfg := testConfig("suite", srv.URL)
	cfg.MaxConcurrency = 8
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ctx := context.Background()
	err = c.doer.getJSON(ctx, "/first", nil, func([]byte) error { return nil })
	if err == nil {
		t.Fatal("the first request got no error, want its 429")
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.doer.getJSON(ctx, "/billing/x", nil, func([]byte) error { return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(early) > 0 {
		t.Fatalf("%d requests reached the server within the 1 s Retry-After of a 429: %v", len(early), early)
	}
	s := c.LimiterStats()
	if s.Requests[OutcomeThrottled] != 1 || s.Requests[OutcomeOK] != 6 || s.Throttled != time.Second {
		t.Fatalf("limiter stats %+v", s)
	}
}
