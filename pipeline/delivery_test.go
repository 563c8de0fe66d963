package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/source"
)

// These tests run in a synctest bubble: time is fake and advances only when
// every goroutine of the test waits, so retries with backoff, batch ages and
// shutdown timeouts are exact and instant.

// condSink refuses (with the error refuse returns) any Write holding an
// event refuse names, and records what it stored.
type condSink struct {
	mu      sync.Mutex
	refuse  func(locator string) error
	ensure  func() error
	written map[string]int // event locator → rows stored in events
	rejects map[string]string
	writes  int
}

func newCondSink(refuse func(string) error) *condSink {
	return &condSink{refuse: refuse, written: map[string]int{}, rejects: map[string]string{}}
}

func (s *condSink) Ensure(context.Context, mapping.Schema) error {
	if s.ensure != nil {
		return s.ensure()
	}
	return nil
}

func (s *condSink) Close() error { return nil }

func (s *condSink) Write(_ context.Context, rows *mapping.Rows) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	ev := rows.ByTable[mapping.TableEvents]
	if ev != nil && s.refuse != nil {
		for _, loc := range ev.Values[0].Strings {
			if err := s.refuse(loc); err != nil {
				return err
			}
		}
	}
	if ev != nil {
		for _, loc := range ev.Values[0].Strings {
			s.written[loc]++
		}
	}
	if rj := rows.ByTable[mapping.TableRejects]; rj != nil {
		for i, loc := range rj.Values[4].Strings { // event_locator
			s.rejects[loc] = rj.Values[3].Strings[i] // reason
		}
	}
	return nil
}

func (s *condSink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.written)
}

// countingObserver records the observer calls the tests check.
type countingObserver struct {
	nopObserver
	mu        sync.Mutex
	attempts  map[string]int // component/outcome → calls
	rejected  map[string]int
	maxWindow int
}

func newCountingObserver() *countingObserver {
	return &countingObserver{attempts: map[string]int{}, rejected: map[string]int{}}
}

func (o *countingObserver) Attempt(component, outcome string) {
	o.mu.Lock()
	o.attempts[component+"/"+outcome]++
	o.mu.Unlock()
}

func (o *countingObserver) Rejected(kind string, n int) {
	o.mu.Lock()
	o.rejected[kind] += n
	o.mu.Unlock()
}

func (o *countingObserver) Window(n int) {
	o.mu.Lock()
	o.maxWindow = max(o.maxWindow, n)
	o.mu.Unlock()
}

// batchesOf returns n source batches of size events each, positions p00 …
func batchesOf(n, size int) []source.Batch {
	var out []source.Batch
	for i := range n {
		out = append(out, source.Batch{Events: events(i*size, size), Position: source.Position(fmt.Sprintf("p%02d", i))})
	}
	return out
}

// TestWindowBoundsRunAhead: one batch whose INSERT keeps failing
// transiently holds the pipeline back: at most window-1 batches after it are
// taken and written, the checkpoint stays before it, and once the fault
// clears everything ends exact.
func TestWindowBoundsRunAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		var broken sync.Mutex
		stuck := true
		snk := newCondSink(func(loc string) error {
			broken.Lock()
			defer broken.Unlock()
			if stuck && loc == "ev00050" { // batch 5 of 30
				return errors.New("connection reset by a proxy")
			}
			return nil
		})
		src := &scriptSource{j: j, batches: batchesOf(30, 10)}
		store := &memStore{j: j}
		cfg := testConfig()
		cfg.Writers, cfg.InFlight = 2, 1
		obs := newCountingObserver()
		p := New(cfg, Parts{Source: src, Sink: snk, Store: store, Schema: mapping.DefaultSchema()}, obs, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()

		time.Sleep(10 * time.Minute) // retries of batch 5 go on meanwhile
		synctest.Wait()
		past := 0
		snk.mu.Lock()
		for loc := range snk.written {
			var i int
			fmt.Sscanf(loc, "ev%d", &i)
			if i >= 60 {
				past++
			}
		}
		snk.mu.Unlock()
		window := cfg.Writers + cfg.InFlight
		if limit := (window - 1) * 10; past > limit {
			t.Errorf("%d events written past the stuck batch, want at most %d (window %d)", past, limit, window)
		}
		if s := p.Status(); s.Checkpoint.Position != "p04" || s.Checkpoint.Events != 50 {
			t.Errorf("checkpoint %s at %d events while batch 5 is stuck, want p04 at 50", s.Checkpoint.Position, s.Checkpoint.Events)
		}
		if obs.maxWindow > window {
			t.Errorf("window held %d batches, want at most %d", obs.maxWindow, window)
		}
		if err := p.Ready(time.Hour)(ctx); err == nil || !strings.Contains(err.Error(), "sink: failing since") {
			t.Errorf("Ready while the sink fails for 10 minutes = %v, want it to name the sink", err)
		}

		broken.Lock()
		stuck = false
		broken.Unlock()
		time.Sleep(time.Minute)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := snk.distinct(); got != 300 {
			t.Errorf("%d distinct events written, want 300", got)
		}
		if store.cp == nil || store.cp.Position != "p29" || store.cp.Events != 300 {
			t.Errorf("final checkpoint %+v, want p29 at 300 events", store.cp)
		}
		if n := obs.attempts["sink/transient"]; n < 5 {
			t.Errorf("%d transient sink attempts counted, want the retries of the stuck batch", n)
		}
	})
}

// TestPoisonEventIsIsolatedAndQuarantined: ClickHouse refuses every INSERT
// holding one event; the pipeline cuts the batch down to that event, writes
// it to the rejects table with its reason, writes every other event, and
// goes on.
func TestPoisonEventIsIsolatedAndQuarantined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		snk := newCondSink(func(loc string) error {
			if loc == "ev00023" {
				return fault.Poison(errors.New("code: 41, CANNOT_PARSE_DATETIME"))
			}
			return nil
		})
		src := &scriptSource{j: j, end: io.EOF, batches: batchesOf(4, 10)}
		store := &memStore{j: j}
		obs := newCountingObserver()
		p := New(testConfig(), Parts{Source: src, Sink: snk, Store: store, Schema: mapping.DefaultSchema()}, obs, nil)
		if err := p.Run(context.Background()); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := snk.distinct(); got != 39 {
			t.Errorf("%d events written, want the 39 others", got)
		}
		if n := snk.written["ev00023"]; n != 0 {
			t.Errorf("the refused event has %d events rows", n)
		}
		reason, ok := snk.rejects["ev00023"]
		if !ok || !strings.HasPrefix(reason, mapping.RejectRefused+": ") || !strings.Contains(reason, "CANNOT_PARSE_DATETIME") {
			t.Errorf("rejects row of ev00023: %q (present %v), want a refused reason with ClickHouse's message", reason, ok)
		}
		if store.cp == nil || store.cp.Position != "p03" || store.cp.Events != 40 {
			t.Errorf("checkpoint %+v, want p03 at 40 events", store.cp)
		}
		if obs.rejected[mapping.RejectRefused] != 1 {
			t.Errorf("rejected counts %v, want refused: 1", obs.rejected)
		}
		// log2(10) levels of halving: far fewer writes than one per event.
		if snk.writes > 20 {
			t.Errorf("%d writes to isolate one event among 40", snk.writes)
		}
	})
}

// TestSourceRejectsAreQuarantined: an event the source could not read goes
// to the rejects table; the events beside it are written.
func TestSourceRejectsAreQuarantined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		evs := events(0, 5)
		evs[2] = source.Event{Locator: "", Tenant: "t", Flavor: source.FlavorSuite, Data: []byte(`{"type":"policy.issue"}`),
			Reject: mapping.RejectReason(mapping.RejectMissingField, "no locator")}
		src := &scriptSource{j: j, end: io.EOF, batches: []source.Batch{{Events: evs, Position: "p1"}}}
		snk := newCondSink(nil)
		obs := newCountingObserver()
		store := &memStore{j: j}
		p := New(testConfig(), Parts{Source: src, Sink: snk, Store: store, Schema: mapping.DefaultSchema()}, obs, nil)
		if err := p.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := snk.distinct(); got != 4 {
			t.Errorf("%d events written, want 4", got)
		}
		if reason := snk.rejects[""]; !strings.HasPrefix(reason, "missing_field: ") {
			t.Errorf("rejects row: %q, want the source's reason", reason)
		}
		if obs.rejected[mapping.RejectMissingField] != 1 || store.cp.Events != 5 {
			t.Errorf("rejected %v, checkpoint events %d; want missing_field: 1 and 5", obs.rejected, store.cp.Events)
		}
	})
}

// TestRejectPolicyStop: with --reject.policy=stop, an unreadable event or a
// refused one stops the pipeline with a message naming it, and nothing at
// or after it is checkpointed.
func TestRejectPolicyStop(t *testing.T) {
	for _, tt := range []struct {
		name   string
		edit   func([]source.Event)
		refuse func(string) error
		want   string
	}{
		{"source reject", func(evs []source.Event) {
			evs[5].Reject = mapping.RejectReason(mapping.RejectInvalidJSON, "data is not JSON")
		}, nil, `event "ev00015" (type "policy.issue") cannot be read: invalid_json`},
		{"refused by ClickHouse", nil, func(loc string) error {
			if loc == "ev00015" {
				return fault.Poison(errors.New("value out of range"))
			}
			return nil
		}, `ClickHouse refused event "ev00015"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				j := &journal{}
				bs := batchesOf(3, 10)
				if tt.edit != nil {
					tt.edit(bs[1].Events[:10:10])
				}
				src := &scriptSource{j: j, end: io.EOF, batches: bs}
				store := &memStore{j: j}
				cfg := testConfig()
				cfg.RejectPolicy = RejectStop
				cfg.Writers = 1
				err := newP(cfg, src, newCondSink(tt.refuse), store).Run(context.Background())
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "--reject.policy=stop") {
					t.Fatalf("Run = %v, want an error containing %q and the policy", err, tt.want)
				}
				if store.cp != nil && store.cp.Events > 10 {
					t.Errorf("checkpoint %+v past the rejected event", *store.cp)
				}
			})
		})
	}
}

// flakyEnsureSink is a sink whose Ensure fails transiently until ready.
func TestStartupRetriesWhileServersAreDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		var mu sync.Mutex
		down := true
		snk := newCondSink(nil)
		snk.ensure = func() error {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return errors.New("dial tcp 127.0.0.1:9000: connect: connection refused")
			}
			return nil
		}
		src := &scriptSource{j: j, batches: batchesOf(1, 3)}
		store := &memStore{j: j}
		cfg := testConfig()
		cfg.RetryMax = 10 * time.Second
		p := newP(cfg, src, snk, store)
		ready := p.Ready(time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()

		time.Sleep(time.Minute)
		synctest.Wait()
		err := ready(ctx)
		for _, want := range []string{"starting: preparing the ClickHouse schema", "sink: failing since", "connection refused"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Ready during start-up = %v, want it to contain %q", err, want)
			}
		}
		if s := p.Status(); s.Components[ComponentSink].Failures < 5 {
			t.Errorf("%d failed attempts in a minute, want the retries", s.Components[ComponentSink].Failures)
		}

		mu.Lock()
		down = false
		mu.Unlock()
		time.Sleep(cfg.RetryMax + cfg.BatchAge + time.Second)
		synctest.Wait()
		if err := ready(ctx); err != nil {
			t.Errorf("Ready once ClickHouse answers = %v, want ready", err)
		}
		if s := p.Status(); s.Checkpoint.Position != "p00" {
			t.Errorf("checkpoint %q, want p00 once ClickHouse answers", s.Checkpoint.Position)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

// TestShutdownDuringStartup: a signal while ClickHouse is unreachable at
// start ends Run at once with no error: nothing was read.
func TestShutdownDuringStartup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		snk := newCondSink(nil)
		snk.ensure = func() error { return errors.New("connection refused") }
		p := newP(testConfig(), &scriptSource{j: &journal{}}, snk, &memStore{j: &journal{}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(3 * time.Second)
		begin := time.Now()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if took := time.Since(begin); took > 0 {
			t.Errorf("Run took %s after the cancel", took)
		}
	})
}

// fencedStore saves until fenced is set, then refuses as a newer generation would.
type fencedStore struct {
	memStore
	fenced bool
}

func (s *fencedStore) Save(ctx context.Context, l checkpoint.Lease, cp checkpoint.Checkpoint) error {
	if s.fenced {
		return fault.Permanent(fmt.Errorf("checkpoint of pipeline %q was reset or taken over (generation 2; this process holds 1): %w", l.Pipeline, checkpoint.ErrFenced))
	}
	return s.memStore.Save(ctx, l, cp)
}

// TestFencedSaveStops: a save refused because a newer generation exists
// stops the pipeline with the store's message, without retrying.
func TestFencedSaveStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		store := &fencedStore{memStore: memStore{j: j}, fenced: true}
		obs := newCountingObserver()
		p := New(testConfig(), Parts{Source: &scriptSource{j: j, batches: batchesOf(2, 10)}, Sink: newCondSink(nil), Store: store, Schema: mapping.DefaultSchema()}, obs, nil)
		err := p.Run(context.Background())
		if !errors.Is(err, checkpoint.ErrFenced) || !strings.Contains(err.Error(), "reset or taken over") {
			t.Fatalf("Run = %v, want the fenced error", err)
		}
		if n := obs.attempts["checkpoint/permanent"]; n != 1 {
			t.Errorf("%d permanent checkpoint attempts, want 1 (no retry)", n)
		}
	})
}

// retryAfterSource fails its first Read with a Retry-After hint.
type retryAfterSource struct {
	scriptSource
	failed bool
	reads  []time.Time
}

func (s *retryAfterSource) Read(ctx context.Context, n int) (source.Batch, error) {
	s.reads = append(s.reads, time.Now())
	if !s.failed {
		s.failed = true
		return source.Batch{}, fault.WithRetryAfter(errors.New("HTTP 429 Too Many Requests"), 7*time.Second)
	}
	return s.scriptSource.Read(ctx, n)
}

// TestTransientReadHonoursRetryAfter: a source failure that asks for a pause
// is retried no sooner than that pause, and the events then flow.
func TestTransientReadHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &retryAfterSource{scriptSource: scriptSource{j: j, end: io.EOF, batches: batchesOf(1, 5)}}
		store := &memStore{j: j}
		if err := newP(testConfig(), src, newCondSink(nil), store).Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(src.reads) < 2 {
			t.Fatalf("%d reads, want a retry", len(src.reads))
		}
		if gap := src.reads[1].Sub(src.reads[0]); gap < 7*time.Second {
			t.Errorf("retried after %s, want at least the 7s Retry-After", gap)
		}
		if store.cp == nil || store.cp.Events != 5 {
			t.Errorf("checkpoint %+v, want 5 events", store.cp)
		}
	})
}

// ackFailSource cannot acknowledge.
type ackFailSource struct{ scriptSource }

func (s *ackFailSource) Ack(context.Context, source.Position) error {
	return errors.New("replication connection lost")
}

// TestAckFailureDoesNotBlock: a transient acknowledgement failure is
// recorded in the source's health and the pipeline goes on.
func TestAckFailureDoesNotBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &ackFailSource{scriptSource{j: j, end: io.EOF, batches: batchesOf(3, 10)}}
		store := &memStore{j: j}
		if err := newP(testConfig(), src, newCondSink(nil), store).Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if store.cp == nil || store.cp.Events != 30 {
			t.Errorf("checkpoint %+v, want 30 events", store.cp)
		}
	})
}

// TestReadyRules: readiness from the health table alone: red while
// starting; a failing component is tolerated for FailureGrace; events read
// but not checkpointed for too long turn it red; a quiet caught-up source
// with an old checkpoint is ready.
func TestReadyRules(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg := testConfig()
	cfg.FailureGrace = 15 * time.Second
	p := newP(cfg, nil, nil, nil)
	p.now = func() time.Time { return now }
	p.health.init(p.nowFunc)
	ready := p.Ready(time.Minute)
	check := func(what string, wantErr string) {
		t.Helper()
		err := ready(context.Background())
		switch {
		case wantErr == "" && err != nil:
			t.Errorf("%s: Ready = %v, want ready", what, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Errorf("%s: Ready = %v, want an error containing %q", what, err, wantErr)
		}
	}
	check("before Run", "starting: not started")
	p.health.setPhase("")
	p.status.setCheckpoint(checkpoint.Checkpoint{}, now.Add(-time.Hour))
	check("quiet source, old checkpoint", "")
	p.health.fail(ComponentSource, errors.New("postgres replication connection lost"))
	now = now.Add(10 * time.Second)
	check("source failing for 10s (grace 15s)", "")
	now = now.Add(10 * time.Second)
	check("source failing for 20s", "source: failing since 2026-01-01T12:00:00Z (20s, 1 attempts): postgres replication connection lost")
	p.health.ok(ComponentSource)
	check("source healthy again", "")
	p.status.setRead(now.Add(-2 * time.Minute))
	check("read 2 minutes ago, checkpoint an hour old", "checkpoint: events read 2m0s ago are not checkpointed")
	p.status.setCheckpoint(checkpoint.Checkpoint{}, now.Add(-30*time.Second))
	check("checkpoint 30s old after the last read", "")
}

// TestReadyNamesAFrozenSink: a write that does not return (ClickHouse stopped
// answering) shows in readiness once it has waited longer than the grace,
// although it has not failed; a source's Read waiting for events does not.
func TestReadyNamesAFrozenSink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &chanSource{scriptSource: scriptSource{j: j}, ch: make(chan source.Batch)}
		cfg := testConfig()
		cfg.FailureGrace = 15 * time.Second
		p := newP(cfg, src, hangSink{}, &memStore{j: j})
		ready := p.Ready(time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(time.Minute) // the source waits for events: not a problem
		synctest.Wait()
		if err := ready(ctx); err != nil {
			t.Errorf("Ready with a quiet source = %v, want ready", err)
		}
		src.ch <- source.Batch{Events: events(0, 3), Position: "p1"}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if err := ready(ctx); err != nil {
			t.Errorf("Ready 10s into a hanging write (grace 15s) = %v, want ready", err)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if err := ready(ctx); err == nil || !strings.Contains(err.Error(), "sink: no answer for 2") {
			t.Errorf("Ready 20s into a hanging write = %v, want it to name the sink", err)
		}
		cancel()
		<-done
	})
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProgressLines: while events flow an Info line reports progress every
// interval; the first time the source catches up one line says so; when Run
// returns one line sums the run up.
func TestProgressLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &chanSource{scriptSource: scriptSource{j: j}, ch: make(chan source.Batch)}
		var logs syncBuffer
		cfg := testConfig()
		p := New(cfg, Parts{Source: src, Sink: newCondSink(nil), Store: &memStore{j: j}, Schema: mapping.DefaultSchema()},
			nil, slog.New(slog.NewTextHandler(&logs, nil)))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		src.ch <- source.Batch{Events: events(0, 10), Position: "p1"}
		src.ch <- source.Batch{Position: "p2"} // caught up
		time.Sleep(progressInterval + time.Second)
		src.ch <- source.Batch{Events: events(10, 5), Position: "p3"}
		time.Sleep(progressInterval + time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		out := logs.String()
		for _, want := range []string{
			`msg="caught up with the source`, "events_read=10",
			`msg=progress events_written=10`, "lag=",
			`msg="pipeline stopped" pipeline=test events_read=15 events_written=15 events_rejected=0`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("logs lack %q:\n%s", want, out)
			}
		}
		if n := strings.Count(out, "caught up with the source"); n != 1 {
			t.Errorf("%d caught-up lines, want 1", n)
		}
	})
}

// probeSource is a scriptSource that is a source.Prober: probe answers each
// Probe in turn.
type probeSource struct {
	scriptSource
	probe func() error
}

func (s *probeSource) Probe(context.Context) error {
	err := s.probe()
	s.j.add("probe %v", err)
	return err
}

// TestProbeBeforeSchema: a source that can be tried is tried before any DDL;
// a refused token (permanent) stops at once without touching the sink, a
// transient failure is retried with readiness red, naming the source.
func TestProbeBeforeSchema(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		snk := newCondSink(nil)
		snk.ensure = func() error { j.add("ensure"); return nil }
		src := &probeSource{scriptSource: scriptSource{j: j}, probe: func() error {
			return permanentErr{errors.New("GET /event/t/events/list: HTTP 401 Unauthorized")}
		}}
		err := newP(testConfig(), src, snk, &memStore{j: j}).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "try the source: GET /event/t/events/list: HTTP 401") {
			t.Errorf("Run = %v, want the permanent probe failure", err)
		}
		if got := j.list(); len(got) != 1 || !strings.HasPrefix(got[0], "probe ") {
			t.Errorf("operations %q, want the probe alone (no schema, no checkpoint, no open)", got)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		snk := newCondSink(nil)
		snk.ensure = func() error { j.add("ensure"); return nil }
		var mu sync.Mutex
		down := true
		src := &probeSource{scriptSource: scriptSource{j: j}, probe: func() error {
			mu.Lock()
			defer mu.Unlock()
			if down {
				return errors.New("dial tcp: connection refused")
			}
			return nil
		}}
		cfg := testConfig()
		cfg.RetryMax = time.Second
		p := newP(cfg, src, snk, &memStore{j: j})
		ready := p.Ready(time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(cfg.FailureGrace + time.Second)
		synctest.Wait()
		if err := ready(ctx); err == nil || !strings.Contains(err.Error(), "starting: trying the source") || !strings.Contains(err.Error(), "source: failing since") {
			t.Errorf("Ready while the probe fails = %v, want it to name the source", err)
		}
		if ops := j.list(); len(ops) < 5 || slices.Contains(ops, "ensure") {
			t.Errorf("operations %q while the probe fails, want retried probes and no schema", ops)
		}
		mu.Lock()
		down = false
		mu.Unlock()
		time.Sleep(time.Minute)
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		ops := j.list()
		i := slices.Index(ops, "probe <nil>")
		if i < 0 || i+1 >= len(ops) || ops[i+1] != "ensure" {
			t.Errorf("operations %q, want failed probes, one that succeeds, then the schema", ops)
		}
	})
}

// degradedSink is a sink that reports a degraded state (a replica down).
type degradedSink struct {
	recordSink
	reasons []string
}

func (s *degradedSink) Degraded() []string { return s.reasons }

// TestReadyDegraded: a running pipeline whose sink reports a degraded state
// is ready with the reasons (a DegradedError); a failure still makes it
// unready, and during start-up it is not ready either way.
func TestReadyDegraded(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	snk := &degradedSink{reasons: []string{"ClickHouse 10.0.0.1:9000 unreachable"}}
	cfg := testConfig()
	cfg.FailureGrace = 15 * time.Second
	p := newP(cfg, nil, snk, nil)
	p.now = func() time.Time { return now }
	p.health.init(p.nowFunc)
	ready := p.Ready(time.Minute)
	if err := ready(context.Background()); err == nil || !strings.Contains(err.Error(), "starting") {
		t.Errorf("before Run: %v, want not ready", err)
	}
	p.health.setPhase("")
	p.status.setCheckpoint(checkpoint.Checkpoint{}, now)
	var d DegradedError
	if err := ready(context.Background()); !errors.As(err, &d) || !d.Degraded() || d.Reasons[0] != snk.reasons[0] {
		t.Errorf("running with a replica down: %v, want a DegradedError with the sink's reasons", err)
	}
	p.health.fail(ComponentSink, errors.New("connection refused"))
	now = now.Add(20 * time.Second)
	if err := ready(context.Background()); err == nil || errors.As(err, &d) {
		t.Errorf("sink failing for 20 s: %v, want not ready", err)
	}
	p.health.ok(ComponentSink)
	snk.reasons = nil
	if err := ready(context.Background()); err != nil {
		t.Errorf("every replica back: %v, want ready", err)
	}
}
