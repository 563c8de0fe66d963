package eventapi

import (
	"context"
	"sync"
	"time"
)

// Defaults of the request budget.
const (
	DefaultMaxConcurrency = 16
	// defaultThrottlePause is how long a 429 without a usable Retry-After
	// pauses every request.
	defaultThrottlePause = time.Second
)

// Outcomes of one request, as the limiter counts them.
const (
	OutcomeOK        = "ok"        // an answer that says nothing about load: 2xx, and 4xx other than 408/429
	OutcomeThrottled = "throttled" // 429 (or 503 with Retry-After): every request pauses
	OutcomeOverload  = "overload"  // 5xx, 408, a timeout or no answer: the limit halves
	OutcomeCancelled = "cancelled" // the caller's context ended: says nothing about the server
)

// limiter is the one request budget of an API: every request of a client
// (the pages of every window, the enrichment look-ups) takes a slot first.
// The number of slots adapts, AIMD: it starts at the maximum, grows by
// 1/limit per successful request (about one per round of requests), and
// halves, down to 1, on a 429, a 5xx, a 408, a timeout or a failed
// connection — at most once per round, so that a burst of failures of
// requests sent together counts once. A 429 (or a 503 with Retry-After)
// also pauses every request, started or not, for its Retry-After (1 s
// without one): no new request starts before the pause is over.
type limiter struct {
	max float64

	mu           sync.Mutex
	limit        float64   // current limit, in [1, max]
	inFlight     int       // slots taken
	pausedUntil  time.Time // no slot is handed out before it
	lastDecrease time.Time // when the limit was last halved
	throttled    time.Duration
	outcomes     map[string]uint64
	changed      chan struct{} // closed and replaced on every change a waiter may care about
}

func newLimiter(max int) *limiter {
	if max < 1 {
		max = 1
	}
	return &limiter{max: float64(max), limit: float64(max), outcomes: map[string]uint64{}, changed: make(chan struct{})}
}

// broadcast wakes every waiter. l.mu must be held.
func (l *limiter) broadcast() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// acquire waits for a slot and returns when the request may start, and a
// function to call with the request's outcome once it ended. It returns
// ctx's error if ctx ends first.
func (l *limiter) acquire(ctx context.Context) (release func(outcome string, retryAfter time.Duration), err error) {
	for {
		l.mu.Lock()
		now := time.Now()
		if now.Before(l.pausedUntil) {
			wait := l.pausedUntil.Sub(now)
			ch := l.changed
			l.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			case <-ch:
				t.Stop()
			}
			continue
		}
		if l.inFlight < int(l.limit) {
			l.inFlight++
			l.mu.Unlock()
			started := now
			var once sync.Once
			return func(outcome string, retryAfter time.Duration) {
				once.Do(func() { l.release(started, outcome, retryAfter) })
			}, nil
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

// release returns the slot of a request started at started, and adapts the
// limit to its outcome.
func (l *limiter) release(started time.Time, outcome string, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.inFlight--
	l.outcomes[outcome]++
	switch outcome {
	case OutcomeOK:
		l.limit = min(l.max, l.limit+1/l.limit)
	case OutcomeThrottled, OutcomeOverload:
		// Requests sent before the last decrease saw the old load: their
		// failures are the same signal, counted once.
		if !started.Before(l.lastDecrease) {
			l.limit = max(1, l.limit/2)
			l.lastDecrease = now
		}
		if outcome == OutcomeThrottled {
			if retryAfter <= 0 {
				retryAfter = defaultThrottlePause
			}
			if until := now.Add(retryAfter); until.After(l.pausedUntil) {
				from := l.pausedUntil
				if from.Before(now) {
					from = now
				}
				l.throttled += until.Sub(from)
				l.pausedUntil = until
			}
		}
	}
	l.broadcast()
}

// LimiterStats is a snapshot of an API's request budget.
type LimiterStats struct {
	Limit     float64           // current concurrency limit (AIMD), 1..--api.max-concurrency
	InFlight  int               // requests under way
	Throttled time.Duration     // total time every request was paused by 429s
	Requests  map[string]uint64 // requests by outcome (Outcome*)
}

func (l *limiter) stats() LimiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := LimiterStats{Limit: l.limit, InFlight: l.inFlight, Throttled: l.throttled, Requests: make(map[string]uint64, len(l.outcomes))}
	for k, v := range l.outcomes {
		s.Requests[k] = v
	}
	return s
}

// LimiterStats returns a snapshot of the client's request budget, shared
// by its pages and its Enricher's look-ups.
func (c *Client) LimiterStats() LimiterStats { return c.doer.limit.stats() }
