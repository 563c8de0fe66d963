package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/sink"
	"github.com/tributary-cdc/tributary/source"
)

// These tests pin the loop's ordering and shutdown contracts with recording
// doubles, in synctest bubbles (fake time: sleeps, batch ages, backoffs and
// timeouts are exact and instant); the same loop runs against the real
// emulator and ClickHouse in e2e/.

type journal struct {
	mu  sync.Mutex
	ops []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	j.ops = append(j.ops, fmt.Sprintf(format, args...))
	j.mu.Unlock()
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.ops...)
}

// scriptSource serves pre-cut batches, then blocks (or returns end).
type scriptSource struct {
	j       *journal
	batches []source.Batch
	end     error // returned after the batches; nil: block until ctx is done
	opened  source.Position
}

func (s *scriptSource) Open(_ context.Context, from source.Position) error {
	s.opened = from
	s.j.add("open %s", from)
	return nil
}

func (s *scriptSource) Read(ctx context.Context, _ int) (source.Batch, error) {
	if len(s.batches) > 0 {
		b := s.batches[0]
		s.batches = s.batches[1:]
		return b, nil
	}
	if s.end != nil {
		return source.Batch{}, s.end
	}
	<-ctx.Done()
	return source.Batch{}, ctx.Err()
}

func (s *scriptSource) Ack(_ context.Context, upTo source.Position) error {
	s.j.add("ack %s", upTo)
	return nil
}

func (s *scriptSource) Close(context.Context) error { return nil }

type permanentErr struct{ error }

func (permanentErr) Permanent() bool { return true }

// recordSink fails the first failures writes with err, then succeeds. The
// pipeline's writers call Write concurrently, so its counters are locked.
type recordSink struct {
	mu       sync.Mutex
	j        *journal
	failures int
	err      error
	events   int
}

func (s *recordSink) Ensure(context.Context, mapping.Schema) error { return nil }

func (s *recordSink) Write(_ context.Context, rows *mapping.Rows) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		s.j.add("write failed")
		return s.err
	}
	n := rows.ByTable["events"].Len()
	s.events += n
	s.j.add("write %d", n)
	return nil
}

func (s *recordSink) Close() error { return nil }

type memStore struct {
	j  *journal
	cp *checkpoint.Checkpoint
}

func (m *memStore) Load(context.Context, string) (checkpoint.Checkpoint, bool, error) {
	if m.cp == nil {
		return checkpoint.Checkpoint{}, false, nil
	}
	return *m.cp, true, nil
}

func (m *memStore) Acquire(ctx context.Context, pipeline string) (checkpoint.Lease, checkpoint.Checkpoint, bool, error) {
	cp, found, err := m.Load(ctx, pipeline)
	return checkpoint.Lease{Pipeline: pipeline, Generation: 1}, cp, found, err
}

// Save judges a save as the real stores do (checkpoint.CheckSave): the
// pipeline must save under its lease and never move backwards.
func (m *memStore) Save(_ context.Context, lease checkpoint.Lease, cp checkpoint.Checkpoint) error {
	newest := checkpoint.Newest{Exists: true, Generation: 1}
	if m.cp != nil {
		newest.Events = m.cp.Events
	}
	if err := checkpoint.CheckSave(lease, cp, newest); err != nil {
		return err
	}
	m.j.add("save %s %d", cp.Position, cp.Events)
	m.cp = &cp
	return nil
}

func (m *memStore) Reset(context.Context, string) error { m.cp = nil; return nil }
func (m *memStore) Close() error                        { return nil }

func events(from, n int) []source.Event {
	out := make([]source.Event, n)
	for i := range out {
		out[i] = source.Event{
			Locator: fmt.Sprintf("ev%05d", from+i), Type: "policy.issue", Tenant: "t",
			Timestamp: time.Unix(int64(from+i), 0).UTC(), Data: json.RawMessage(`{"policyLocator":"p1"}`),
			Flavor: source.FlavorSuite, Seq: uint64(from + i),
		}
	}
	return out
}

// newP returns a pipeline of the test doubles, with the test schema.
func newP(cfg Config, src source.Source, snk sink.Sink, store checkpoint.Store) *Pipeline {
	return New(cfg, Parts{Source: src, Sink: snk, Store: store, Schema: mapping.DefaultSchema()}, nil, nil)
}

func testConfig() Config {
	c := DefaultConfig()
	c.Name = "test"
	c.BatchEvents = 10
	c.BatchAge = 50 * time.Millisecond
	c.RetryMax = 5 * time.Millisecond
	return c
}

func TestWriteThenSaveThenAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &scriptSource{j: j, end: io.EOF, batches: []source.Batch{
			{Events: events(0, 6), Position: "p1"},
			{Events: events(6, 6), Position: "p2"}, // 12 pending ≥ 10: flush at p2
			{Events: events(12, 3), Position: "p3"},
		}}
		snk := &recordSink{j: j}
		store := &memStore{j: j}
		cfg := testConfig()
		cfg.Writers = 1 // with more, batches written out of order are saved together
		if err := newP(cfg, src, snk, store).Run(context.Background()); err != nil {
			t.Fatalf("Run: %v", err)
		}
		ops := j.list()
		at := map[string]int{}
		for i, op := range ops {
			at[op] = i
		}
		want := []string{"open ", "write 12", "save p2 12", "ack p2", "write 3", "save p3 15", "ack p3"}
		if len(ops) != len(want) {
			t.Fatalf("operations %q, want these in some valid order: %q", ops, want)
		}
		// Each position is saved after its batch is written and acknowledged after
		// it is saved; positions are saved in order. (The writer may start on the
		// next batch while the previous position is being saved.)
		before := [][2]string{
			{"open ", "write 12"}, {"write 12", "save p2 12"}, {"save p2 12", "ack p2"},
			{"write 12", "write 3"}, {"write 3", "save p3 15"}, {"save p2 12", "save p3 15"}, {"save p3 15", "ack p3"},
		}
		for _, b := range before {
			i, ok1 := at[b[0]]
			k, ok2 := at[b[1]]
			if !ok1 || !ok2 || i > k {
				t.Errorf("%q must come before %q; operations: %q", b[0], b[1], ops)
			}
		}
	})
}

func TestResumeFromCheckpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &scriptSource{j: j, end: io.EOF, batches: []source.Batch{{Events: events(100, 2), Position: "p9"}}}
		store := &memStore{j: j, cp: &checkpoint.Checkpoint{Pipeline: "test", Position: "p8", Events: 100}}
		if err := newP(testConfig(), src, &recordSink{j: j}, store).Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if src.opened != "p8" {
			t.Errorf("source opened at %q, want p8", src.opened)
		}
		if got, want := store.cp.Events, uint64(102); got != want {
			t.Errorf("checkpoint events = %d, want %d", got, want)
		}
	})
}

func TestTransientWriteErrorIsRetriedBeforeSaving(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &scriptSource{j: j, end: io.EOF, batches: []source.Batch{{Events: events(0, 4), Position: "p1"}}}
		snk := &recordSink{j: j, failures: 3, err: errors.New("connection reset")}
		cfg := testConfig()
		cfg.Writers = 1
		if err := newP(cfg, src, snk, &memStore{j: j}).Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(j.list(), ", ")
		want := "open , write failed, write failed, write failed, write 4, save p1 4, ack p1"
		if got != want {
			t.Errorf("operations:\n got %s\nwant %s", got, want)
		}
	})
}

func TestPermanentWriteErrorStopsWithoutSaving(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &scriptSource{j: j, batches: []source.Batch{{Events: events(0, 4), Position: "p1"}}}
		snk := &recordSink{j: j, failures: 100, err: permanentErr{errors.New("column type mismatch")}}
		store := &memStore{j: j}
		err := newP(testConfig(), src, snk, store).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "column type mismatch") {
			t.Fatalf("Run = %v, want the permanent error", err)
		}
		if store.cp != nil {
			t.Errorf("checkpoint saved after a failed write: %+v", *store.cp)
		}
	})
}

func TestShutdownDrainsAndCheckpoints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &scriptSource{j: j, batches: []source.Batch{{Events: events(0, 3), Position: "p1"}}}
		cfg := testConfig()
		cfg.BatchAge = time.Hour // only the shutdown can flush
		snk := &recordSink{j: j}
		store := &memStore{j: j}
		p := newP(cfg, src, snk, store)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(100 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after cancel = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		snk.mu.Lock()
		written := snk.events
		snk.mu.Unlock()
		if store.cp == nil || store.cp.Position != "p1" || written != 3 {
			t.Errorf("after shutdown: checkpoint %+v, %d events written; want p1 and 3", store.cp, written)
		}
	})
}

func TestAgeFlushesSmallBatchAndEmptyPositionAdvances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &scriptSource{j: j, batches: []source.Batch{
			{Events: events(0, 2), Position: "p1"},
			{Position: "p2"},                       // caught up: no events, the position moved
			{Events: events(2, 2), Position: "p3"}, // a trickle: only BatchAge flushes it
			{Position: "p4"},
		}}
		store := &memStore{j: j}
		p := newP(testConfig(), src, &recordSink{j: j}, store)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = p.Run(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if s := p.Status(); s.Checkpoint.Position == "p4" {
				if s.Checkpoint.Events != 4 {
					t.Errorf("events = %d, want 4", s.Checkpoint.Events)
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("position p4 never checkpointed; operations: %v", j.list())
	})
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := Config{}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted an empty config")
	}
	for _, flag := range []string{"pipeline.name", "pipeline.batch-events", "pipeline.batch-age", "pipeline.in-flight", "pipeline.shutdown-timeout", "pipeline.retry-max"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("Validate error does not name --%s: %v", flag, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
}

// slowSink writes batches after a random pause, so that with several writers
// later batches often finish first.
type slowSink struct {
	j *journal
}

func (s *slowSink) Ensure(context.Context, mapping.Schema) error { return nil }
func (s *slowSink) Close() error                                 { return nil }
func (s *slowSink) Write(_ context.Context, rows *mapping.Rows) error {
	time.Sleep(time.Duration(rand.IntN(15)) * time.Millisecond)
	s.j.add("write %d", rows.ByTable["events"].Len())
	return nil
}

// TestConcurrentWritersSaveInOrder: with four writers finishing out of order,
// every position is saved only after its batch and all earlier ones are
// written, positions are saved in order, and each is acknowledged after it is saved.
func TestConcurrentWritersSaveInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		var batches []source.Batch
		from := 0
		for i := range 30 {
			n := 10 + i // a distinct size identifies each batch
			batches = append(batches, source.Batch{Events: events(from, n), Position: source.Position(fmt.Sprintf("p%02d", i))})
			from += n
		}
		src := &scriptSource{j: j, end: io.EOF, batches: batches}
		store := &memStore{j: j}
		cfg := testConfig()
		cfg.Writers = 4
		if err := newP(cfg, src, &slowSink{j: j}, store).Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		written := map[int]bool{}
		lastSaved, lastAcked := -1, -1
		outOfOrder := false
		for _, op := range j.list() {
			var n, i, total int
			switch {
			case strings.HasPrefix(op, "write "):
				fmt.Sscanf(op, "write %d", &n)
				if len(written) > 0 && !written[n-1] {
					outOfOrder = true
				}
				written[n] = true
			case strings.HasPrefix(op, "save "):
				fmt.Sscanf(op, "save p%d %d", &i, &total)
				if i <= lastSaved {
					t.Errorf("%s after saving p%02d: positions must be saved in order", op, lastSaved)
				}
				for k := 0; k <= i; k++ {
					if !written[10+k] {
						t.Errorf("%s before batch p%02d was written", op, k)
					}
				}
				lastSaved = i
			case strings.HasPrefix(op, "ack "):
				fmt.Sscanf(op, "ack p%d", &i)
				if i != lastSaved {
					t.Errorf("%s, but the last saved position is p%02d", op, lastSaved)
				}
				lastAcked = i
			}
		}
		if lastSaved != 29 || lastAcked != 29 || store.cp.Events != uint64(from) {
			t.Errorf("ended with p%02d saved, p%02d acknowledged, %d events; want p29, p29, %d", lastSaved, lastAcked, store.cp.Events, from)
		}
		if !outOfOrder {
			t.Log("writes happened to finish in order this time")
		}
	})
}

// hangSink blocks every Write until its context ends: a ClickHouse that
// stopped answering.
type hangSink struct{}

func (hangSink) Ensure(context.Context, mapping.Schema) error { return nil }
func (hangSink) Close() error                                 { return nil }
func (hangSink) Write(ctx context.Context, _ *mapping.Rows) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestShutdownTimeoutIsAnError: when the drain cannot finish within
// ShutdownTimeout, Run gives up, saves nothing further and says so.
func TestShutdownTimeoutIsAnError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &scriptSource{j: j, batches: []source.Batch{{Events: events(0, 20), Position: "p1"}}}
		cfg := testConfig()
		cfg.ShutdownTimeout = 200 * time.Millisecond
		store := &memStore{j: j}
		p := newP(cfg, src, hangSink{}, store)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(100 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "shutdown-timeout") {
				t.Errorf("Run = %v, want an error naming --pipeline.shutdown-timeout", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not give up after the shutdown timeout")
		}
		if store.cp != nil {
			t.Errorf("checkpoint saved although nothing was written: %+v", *store.cp)
		}
	})
}

// chanSource serves the batches sent on ch, blocking in between.
type chanSource struct {
	scriptSource
	ch chan source.Batch
}

func (s *chanSource) Read(ctx context.Context, _ int) (source.Batch, error) {
	select {
	case b := <-s.ch:
		return b, nil
	case <-ctx.Done():
		return source.Batch{}, ctx.Err()
	}
}

func TestBacklogTailIsWrittenWhenTheSourceCatchesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := &journal{}
		src := &chanSource{scriptSource: scriptSource{j: j}, ch: make(chan source.Batch)}
		cfg := testConfig()
		cfg.BatchAge = time.Hour // no age flush in this test
		store := &memStore{j: j}
		p := newP(cfg, src, &recordSink{j: j}, store)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		waitFor := func(pos source.Position, events uint64) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if s := p.Status(); s.Checkpoint.Position == pos {
					if s.Checkpoint.Events != events {
						t.Fatalf("checkpoint %s holds %d events, want %d", pos, s.Checkpoint.Events, events)
					}
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Fatalf("position %s never checkpointed; operations: %v", pos, j.list())
		}

		// A backlog: a full batch, then its tail, then the source catches up.
		src.ch <- source.Batch{Events: events(0, 12), Position: "p1"}
		waitFor("p1", 12)
		src.ch <- source.Batch{Events: events(12, 3), Position: "p2"}
		src.ch <- source.Batch{Position: "p3"}
		waitFor("p3", 15) // at once, not after BatchAge

		// Caught up: a trickle waits for BatchAge (here: for the shutdown).
		src.ch <- source.Batch{Events: events(15, 2), Position: "p4"}
		src.ch <- source.Batch{Position: "p5"}
		time.Sleep(200 * time.Millisecond)
		if s := p.Status(); s.Checkpoint.Position != "p3" {
			t.Errorf("a caught-up trickle was flushed before BatchAge: checkpoint %s; operations: %v", s.Checkpoint.Position, j.list())
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if store.cp == nil || store.cp.Position != "p5" || store.cp.Events != 17 {
			t.Errorf("after shutdown: checkpoint %+v, want p5 with 17 events", store.cp)
		}
	})
}
