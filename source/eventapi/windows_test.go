package eventapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// inEmulatorOrder sorts events read from several windows into the
// emulator's order (a window's events arrive in order, windows interleave).
func inEmulatorOrder(t *testing.T, got []source.Event, want []emulator.Event) []source.Event {
	t.Helper()
	idx := make(map[string]int, len(want))
	for i, w := range want {
		idx[w.Locator] = i
	}
	out := slices.Clone(got)
	slices.SortStableFunc(out, func(a, b source.Event) int { return idx[a.Locator] - idx[b.Locator] })
	return out
}

// queryLog records the list queries an emulator answers.
type queryLog struct {
	mu sync.Mutex
	qs []url.Values
}

func (l *queryLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/events/list") || strings.HasPrefix(r.URL.Path, "/eventstream/") {
			l.mu.Lock()
			l.qs = append(l.qs, r.URL.Query())
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func (l *queryLog) all() []url.Values {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.qs)
}

// startLoggedEmulator is startEmulator whose list queries are recorded.
func startLoggedEmulator(t *testing.T, flavor string, n int) (*emulator.Server, *httptest.Server, *queryLog) {
	t.Helper()
	s, err := emulator.New(emulator.Config{Flavor: flavor, Seed: 42, Events: n, Token: emuToken, Policies: 300})
	if err != nil {
		t.Fatalf("emulator.New: %v", err)
	}
	log := &queryLog{}
	srv := httptest.NewServer(log.wrap(s.Handler()))
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return s, srv, log
}

// TestWindowsReadWholeHistory: with 4 readers the history is cut into
// windows from its density, each window's first call carries its
// startTimestamp and endTimestamp and the later ones the token alone, and
// every event is read exactly once.
func TestWindowsReadWholeHistory(t *testing.T) {
	for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
		t.Run(flavor, func(t *testing.T) {
			s, srv, log := startLoggedEmulator(t, flavor, 6000)
			cfg := emulatorConfig(s, srv, 100)
			cfg.BackfillConcurrency = 4
			c := open(t, cfg, "")
			want := s.Events()
			got, batches := readN(t, c, len(want), 500, 30*time.Second)
			compareEvents(t, inEmulatorOrder(t, got, want), want, false)

			st := c.Windows()
			if st.Total < 4 {
				t.Fatalf("%d windows for 6000 events in pages of 100 with 4 readers, want at least 4", st.Total)
			}
			// Positions hold the windows until only the tail is left.
			if !strings.HasPrefix(string(batches[0].Position), windowsPrefix) {
				t.Errorf("first position %q, want windows", batches[0].Position)
			}
			firsts, tokens := 0, 0
			starts := map[string]bool{}
			for _, q := range log.all() {
				switch {
				case q.Has("pagingToken"):
					tokens++
					if len(q) != 1 {
						t.Errorf("token sent with other arguments: %v", q)
					}
				case q.Has("startTimestamp"):
					firsts++
					starts[q.Get("startTimestamp")] = true
					if q.Get("endTimestamp") == "" && len(starts) < st.Total {
						// only the tail (without --api.end) has no end
						continue
					}
				}
			}
			// The probes (4 × readers) and the first call of every window.
			if firsts < 4*4+st.Total-1 {
				t.Errorf("%d first calls, want the 16 probes and one per window (%d windows)", firsts, st.Total)
			}
			if tokens < len(want)/100 {
				t.Errorf("%d calls with a token for %d events in pages of 100", tokens, len(want))
			}
		})
	}
}

// TestWindowsResume: a client stopped in the middle of a parallel backfill
// and a new one opened at the last batch's position read the history
// exactly once together, and the position says how far each window is.
func TestWindowsResume(t *testing.T) {
	s, srv := startEmulator(t, source.FlavorSuite, 5000)
	cfg := emulatorConfig(s, srv, 100)
	cfg.BackfillConcurrency = 3
	want := s.Events()
	c := open(t, cfg, "")
	first, batches := readN(t, c, 1700, 37, 20*time.Second)
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	pos := batches[len(batches)-1].Position
	saved, ok, err := parseWindows(pos)
	if !ok || err != nil {
		t.Fatalf("position after 1700 of 5000 events %q: not windows (%v)", pos, err)
	}
	if saved.Total < 3 || len(saved.W) < 2 || saved.Low <= want[0].Timestamp.UnixMilli()-1 {
		t.Fatalf("saved windows %+v", saved)
	}
	lines := DescribeWindows(pos)
	if len(lines) != len(saved.W)+1 || !strings.Contains(lines[0], "low watermark") || !strings.Contains(strings.Join(lines, "\n"), "read up to") {
		t.Errorf("DescribeWindows:\n%s", strings.Join(lines, "\n"))
	}
	r := open(t, cfg, pos)
	rest, _ := readN(t, r, len(want)-len(first), 1000, 20*time.Second)
	compareEvents(t, inEmulatorOrder(t, append(first, rest...), want), want, false)
	// The ends of the last windows come as empty batches.
	ctx := testenv.Context(t, 10*time.Second)
	for st := r.Windows(); st.Done < st.Total-1; st = r.Windows() {
		b, err := r.Read(ctx, 1000)
		if err != nil || len(b.Events) > 0 {
			t.Fatalf("Read after every event: %d events, %v (windows %+v)", len(b.Events), err, st)
		}
	}
	if st := r.Windows(); st.Total != saved.Total {
		t.Errorf("after the resumed backfill: %+v, want %d windows", st, saved.Total)
	}
}

// TestWindowsFaults: a parallel backfill through every fault the emulator
// injects (errors, 429s, truncated and malformed bodies, resets, repeated
// events) reads every event exactly once; every failure reaches Read, and
// the next Read reads that window again from where it failed.
func TestWindowsFaults(t *testing.T) {
	s, srv := startEmulator(t, source.FlavorSuite, 4000)
	s.SetFaults(emulator.FaultConfig{
		ErrorRate: 0.1, ThrottleRate: 0.02, TruncateRate: 0.05, MalformedRate: 0.05, ResetRate: 0.02,
		DuplicateRate: 0.3, RetryAfter: 50 * time.Millisecond,
	})
	cfg := emulatorConfig(s, srv, 50)
	cfg.BackfillConcurrency = 4
	c := open(t, cfg, "")
	want := s.Events()
	got, _, errs := readNErrs(t, c, len(want), 1000, 60*time.Second)
	compareEvents(t, inEmulatorOrder(t, got, want), want, false)
	if len(errs) == 0 {
		t.Error("no failure reached Read")
	}
	st := c.LimiterStats()
	if st.Requests[OutcomeThrottled] == 0 || st.Requests[OutcomeOverload] == 0 {
		t.Errorf("the limiter saw no 429 or no 5xx: %v", st.Requests)
	}
	t.Logf("%d errors retried, limiter %+v, windows %+v", len(errs), st, c.Windows())
}

// TestWindowsEnd: with --api.end in the past, every window including the
// last is read up to it, then Read says the end is reached.
func TestWindowsEnd(t *testing.T) {
	s, srv := startEmulator(t, source.FlavorSuite, 3000)
	want := s.Events()
	end := want[2000].Timestamp
	var upTo []emulator.Event
	for _, w := range want {
		if w.Timestamp.Before(end) {
			upTo = append(upTo, w)
		}
	}
	cfg := emulatorConfig(s, srv, 50)
	cfg.BackfillConcurrency = 4
	cfg.End = end
	c := open(t, cfg, "")
	got, _ := readN(t, c, len(upTo), 1000, 20*time.Second)
	compareEvents(t, inEmulatorOrder(t, got, want), upTo, false)
	ctx := testenv.Context(t, 10*time.Second)
	for {
		b, err := c.Read(ctx, 1000)
		if errors.Is(err, ErrEndReached) {
			break
		}
		if err != nil {
			t.Fatalf("Read after every event up to the end: %v", err)
		}
		if len(b.Events) > 0 {
			t.Fatalf("Read after every event up to the end returned %d more", len(b.Events))
		}
	}
}

// TestCutWindows: windows hold about the same number of events: sparse
// slices are merged, a dense one is split, they cover the range without a
// gap or an overlap, and the tail follows.
func TestCutWindows(t *testing.T) {
	bounds := []int64{0, 100, 200, 300, 400, 500, 600, 700, 800}
	counts := []float64{500, 500, 500, 500, 40000, 500, 500, 500}
	ws := cutWindows(bounds, counts, 2, 100, 0)
	// target: 43,500 / 8 ≈ 5,437 events a window.
	var dense, sparse int
	for i, w := range ws {
		if i > 0 && w.Start != ws[i-1].End {
			t.Fatalf("window %d starts at %d, the previous ends at %d", i, w.Start, ws[i-1].End)
		}
		if w.ID != i {
			t.Errorf("window %d has id %d", i, w.ID)
		}
		switch {
		case w.Tail:
		case w.Start >= 400 && w.End <= 500:
			dense++
		default:
			sparse++
		}
	}
	if ws[0].Start != 0 || ws[len(ws)-2].End != 800 || !ws[len(ws)-1].Tail || ws[len(ws)-1].Start != 800 || ws[len(ws)-1].End != 0 {
		t.Fatalf("windows do not cover [0, 800) then the open tail: %+v", ws)
	}
	if dense != 7 {
		t.Errorf("the slice of 40,000 events was cut in %d windows, want 7 (40,000 / 5,437 rounded)", dense)
	}
	if sparse != 2 {
		t.Errorf("the 7 slices of 500 events became %d windows, want 2 (the 4 before the dense slice, the 3 after)", sparse)
	}
	// A short range holds one window and the tail; with an end, the tail
	// ends there.
	ws = cutWindows([]int64{0, 10, 20}, []float64{3, 4}, 8, 100, 50)
	if len(ws) != 2 || ws[0].Start != 0 || ws[0].End != 20 || !ws[1].Tail || ws[1].End != 50 {
		t.Errorf("a sparse range: %+v", ws)
	}
}

// TestEstimate: a page that is not full counts its slice exactly; a full
// page's density over the time it spans is extended to the slice.
func TestEstimate(t *testing.T) {
	evs := func(n int, step time.Duration) []source.Event {
		out := make([]source.Event, n)
		for i := range out {
			out[i].Timestamp = time.UnixMilli(1000).Add(time.Duration(i) * step)
		}
		return out
	}
	if got := estimate(evs(7, time.Millisecond), 1000, 9000, 10); got != 7 {
		t.Errorf("a page of 7 of 10: %v, want 7", got)
	}
	// 10 events over 100 ms (1000..1099) of a slice of 8 s from 1000.
	if got := estimate(evs(10, 11*time.Millisecond), 1000, 9000, 10); got < 790 || got > 810 {
		t.Errorf("a full page over 100 ms of 8 s: %v, want about 800", got)
	}
	// The same page in a slice starting 4 s earlier: the density is that of
	// the page, over the slice from its first event (the empty start of the
	// slice holds nothing).
	if got := estimate(evs(10, 11*time.Millisecond), -3000, 9000, 10); got < 790 || got > 810 {
		t.Errorf("a full page over 100 ms after 4 s without events: %v, want about 800", got)
	}
}
