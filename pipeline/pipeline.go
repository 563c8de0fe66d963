// Package pipeline runs one replication: read batches from a source, map them
// to rows, write the rows to the sink, save the position, acknowledge it to the
// source. Reading overlaps with writing inside a bounded window of batches, so
// memory, replay length and the PostgreSQL WAL held stay bounded whatever
// fails.
//
//	reader ──(source batches)──▶ batcher ──(mapped batches)──▶ writers ──▶ committer
//	                             enrich, map, take a         write, isolate   save in order, ack,
//	                             window slot                 poison rows      free the slots
//
// A position is saved only after every row before it is in the sink, and
// acknowledged only after it is saved. The pipeline is the one owner of
// retries and health: sources, the sink and the checkpoint store make one
// attempt per call and classify failures (internal/fault); the pipeline
// retries transient ones with backoff, stops on permanent ones, quarantines
// poison events, and keeps each component's state for /readyz.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/metrics"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/freelist"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/sink"
	"github.com/tributary-cdc/tributary/source"
)

// Reject policies (--reject.policy).
const (
	RejectQuarantine = "quarantine" // write the event to _tributary_rejects and go on
	RejectStop       = "stop"       // stop (exit 1) naming the event
)

// Config tunes batching, the window, retries, health and shutdown.
type Config struct {
	Name            string        // pipeline name: the checkpoint key and the rows' _source
	BatchEvents     int           // flush when this many events are pending
	BatchAge        time.Duration // flush when the oldest pending event is this old
	InFlight        int           // mapped batches waiting for a writer, at most
	Writers         int           // batches written to the sink concurrently
	ShutdownTimeout time.Duration // how long the drain on shutdown may take
	RetryMax        time.Duration // the longest pause between retries of a failed call
	FailureGrace    time.Duration // how long a component may fail before readiness turns red
	RejectPolicy    string        // RejectQuarantine or RejectStop
}

// DefaultConfig returns the defaults, the one place they are set.
func DefaultConfig() Config {
	return Config{
		Name:            "default",
		BatchEvents:     5000,
		BatchAge:        time.Second,
		InFlight:        1,
		Writers:         2,
		ShutdownTimeout: 8 * time.Second,
		RetryMax:        30 * time.Second,
		FailureGrace:    15 * time.Second,
		RejectPolicy:    RejectQuarantine,
	}
}

// Window is the number of batches that may be past the oldest one not yet
// acknowledged, that one included: Writers + InFlight.
func (c Config) Window() int { return c.Writers + c.InFlight }

// RegisterFlags adds the pipeline's flags to fs, with c's values as defaults.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Name, "pipeline.name", c.Name, "pipeline name: the checkpoint key and the _source column of every row")
	fs.IntVar(&c.BatchEvents, "pipeline.batch-events", c.BatchEvents, "write a batch when this many events are pending")
	fs.DurationVar(&c.BatchAge, "pipeline.batch-age", c.BatchAge, "write a batch when its oldest event has waited this long")
	fs.IntVar(&c.InFlight, "pipeline.in-flight", c.InFlight, "mapped batches waiting for a writer at most; writers + in-flight batches may be past the oldest unacknowledged one (bounds memory and replay)")
	fs.IntVar(&c.Writers, "pipeline.writers", c.Writers, "batches written to ClickHouse concurrently; positions are still saved in order")
	fs.DurationVar(&c.ShutdownTimeout, "pipeline.shutdown-timeout", c.ShutdownTimeout, "how long draining on SIGTERM may take before the process gives up")
	fs.DurationVar(&c.RetryMax, "pipeline.retry-max", c.RetryMax, "the longest pause between retries of a failed call (source, ClickHouse, checkpoint)")
	fs.DurationVar(&c.FailureGrace, "pipeline.failure-grace", c.FailureGrace, "how long a component may keep failing before /readyz turns red")
	fs.StringVar(&c.RejectPolicy, "reject.policy", c.RejectPolicy, "an event that cannot be read or stored: quarantine (to the _tributary_rejects table, and go on) or stop (exit 1 naming it)")
}

// Validate returns every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("--pipeline.name must not be empty"))
	}
	if c.BatchEvents < 1 || c.BatchEvents > 1_000_000 {
		errs = append(errs, fmt.Errorf("--pipeline.batch-events must be between 1 and 1000000, got %d", c.BatchEvents))
	}
	if c.BatchAge <= 0 {
		errs = append(errs, fmt.Errorf("--pipeline.batch-age must be positive, got %s", c.BatchAge))
	}
	if c.InFlight < 1 || c.InFlight > 64 {
		errs = append(errs, fmt.Errorf("--pipeline.in-flight must be between 1 and 64, got %d", c.InFlight))
	}
	if c.Writers < 1 || c.Writers > 16 {
		errs = append(errs, fmt.Errorf("--pipeline.writers must be between 1 and 16, got %d", c.Writers))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--pipeline.shutdown-timeout must be positive, got %s", c.ShutdownTimeout))
	}
	if c.RetryMax <= 0 {
		errs = append(errs, fmt.Errorf("--pipeline.retry-max must be positive, got %s", c.RetryMax))
	}
	if c.FailureGrace < 0 {
		errs = append(errs, fmt.Errorf("--pipeline.failure-grace must not be negative, got %s", c.FailureGrace))
	}
	switch c.RejectPolicy {
	case RejectQuarantine, RejectStop:
	default:
		errs = append(errs, fmt.Errorf("--reject.policy must be %s or %s, got %q", RejectQuarantine, RejectStop, c.RejectPolicy))
	}
	return errors.Join(errs...)
}

// Enricher completes data the source left incomplete, such as partial policy
// locator lists; the result is keyed by event locator. It makes one attempt
// per call (the pipeline retries) and may be nil.
type Enricher interface {
	Complete(ctx context.Context, events []source.Event) (map[string][]string, error)
}

// Components are the parts whose health the pipeline keeps, and the values of
// the component label of Observer.Attempt and Observer.Failure.
const (
	ComponentSource     = "source"
	ComponentSink       = "sink"
	ComponentCheckpoint = "checkpoint"
	ComponentEnrich     = "enrich"
)

// Outcomes of one attempt, for Observer.Attempt.
const (
	OutcomeOK        = "ok"        // the call succeeded
	OutcomeTransient = "transient" // it failed and is retried
	OutcomePermanent = "permanent" // it failed for good: the pipeline stops
	OutcomePoison    = "poison"    // its input was refused for its content: isolated and quarantined
)

// Observer receives what the pipeline does, for metrics. Every method must be
// cheap and safe for concurrent use. Nil means none.
type Observer interface {
	BatchRead(events []source.Event)
	Mapped(stats mapping.Stats)
	BatchWritten(events int, tableRows map[string]int, d time.Duration, lastEvent time.Time)
	CheckpointSaved(cp checkpoint.Checkpoint)
	// Attempt counts one call of component with its outcome (an Outcome constant).
	Attempt(component, outcome string)
	// Failure counts a failure of component that was not retried away.
	Failure(component string)
	// Rejected counts n events quarantined for a reason of kind (mapping.RejectKind).
	Rejected(kind string, n int)
	// Window reports how many batches the window holds (taken, not yet acknowledged).
	Window(batches int)
}

// Parts are what a pipeline connects.
type Parts struct {
	Source   source.Source
	Sink     sink.Sink
	Store    checkpoint.Store
	Schema   mapping.Schema // the tables and views the sink ensures at start
	Enricher Enricher       // nil: no enrichment
}

// Pipeline is one replication from a source into a sink.
type Pipeline struct {
	cfg    Config
	src    source.Source
	snk    sink.Sink
	store  checkpoint.Store
	schema mapping.Schema
	enrich Enricher
	obs    Observer
	log    *slog.Logger
	now    func() time.Time

	lease  checkpoint.Lease // the generation Run acquired
	health health
	status statusHolder

	// Mapped rows and event slices of written batches, reused by the next
	// batches: they are the process's largest allocations, and reusing them
	// saves the garbage collector most of its work. Bounded free lists, not
	// sync.Pools, which collections empty (internal/freelist); each keeps
	// as many as the window can hold at once.
	rowsPool   freelist.List[*mapping.Rows]
	eventsPool freelist.List[[]source.Event]

	// For the progress and summary log lines.
	progressEvery   time.Duration
	nRead, nWritten atomic.Uint64 // events read from the source, written and checkpointed
	nRejected       atomic.Uint64 // of which quarantined
	lastEvent       atomic.Int64  // Unix ms of the newest event written
}

// progressInterval is how often an Info line reports progress while events flow.
const progressInterval = 30 * time.Second

// New returns a pipeline; obs may be nil.
func New(cfg Config, parts Parts, obs Observer, logger *slog.Logger) *Pipeline {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if obs == nil {
		obs = nopObserver{}
	}
	p := &Pipeline{cfg: cfg, src: parts.Source, snk: parts.Sink, store: parts.Store, schema: parts.Schema,
		enrich: parts.Enricher, obs: obs, log: logger, now: time.Now, progressEvery: progressInterval}
	p.health.init(p.nowFunc)
	inUse := cfg.Writers + cfg.InFlight + 1 // the window's batches and the one being assembled
	p.rowsPool = freelist.New[*mapping.Rows](inUse)
	p.eventsPool = freelist.New[[]source.Event](inUse)
	return p
}

func (p *Pipeline) nowFunc() time.Time { return p.now() }

// Run replicates until ctx is done or a permanent error occurs.
//
// It first tries the source when it is a source.Prober, then prepares the
// sink's schema, acquires the checkpoint lease and opens the source from
// the saved position, retrying each step while it
// fails transiently (readiness red, naming the component); a cancelled ctx
// during that start-up returns nil, since nothing was read. Then it
// replicates. When ctx is cancelled it stops reading, writes what it has
// read, saves the checkpoint, acknowledges it and returns nil; a drain that
// does not finish within ShutdownTimeout returns an error naming what is
// replayed on the next start.
func (p *Pipeline) Run(ctx context.Context) (err error) {
	began := p.now()
	defer func() { p.summary(began, err) }()
	cp, ok, err := p.start(ctx)
	if err != nil || !ok {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := p.src.Close(cctx); err != nil {
			p.log.Warn("close source", "err", err)
		}
	}()
	return p.replicate(ctx, cp)
}

// start runs the start-up steps; ok is false when ctx ended during them.
func (p *Pipeline) start(ctx context.Context) (cp checkpoint.Checkpoint, ok bool, err error) {
	stopped := func(step string, err error) (checkpoint.Checkpoint, bool, error) {
		if ctx.Err() != nil && !fault.IsPermanent(err) {
			p.log.Info("stopped during start-up: nothing was read", "step", step)
			return cp, false, nil
		}
		return cp, false, fmt.Errorf("%s: %w", step, err)
	}
	if pr, ok := p.src.(source.Prober); ok {
		// One authenticated request before any DDL: a refused token stops
		// here, a transient failure is retried like any other.
		p.health.setPhase("trying the source")
		if err := p.do(ctx, ComponentSource, pr.Probe); err != nil {
			return stopped("try the source", err)
		}
	}
	p.health.setPhase("preparing the ClickHouse schema")
	if err := p.do(ctx, ComponentSink, func(ctx context.Context) error { return p.snk.Ensure(ctx, p.schema) }); err != nil {
		return stopped("prepare the ClickHouse schema", err)
	}
	p.health.setPhase("acquiring the checkpoint")
	var found bool
	err = p.do(ctx, ComponentCheckpoint, func(ctx context.Context) error {
		var err error
		p.lease, cp, found, err = p.store.Acquire(ctx, p.cfg.Name)
		return err
	})
	if err != nil {
		return stopped(fmt.Sprintf("acquire the checkpoint of pipeline %q", p.cfg.Name), err)
	}
	if found {
		p.log.Info("resuming from checkpoint", "pipeline", p.cfg.Name, "events", cp.Events, "saved_at", cp.SavedAt, "generation", p.lease.Generation)
	} else {
		p.log.Info("no checkpoint: starting from the configured start", "pipeline", p.cfg.Name, "generation", p.lease.Generation)
		cp = checkpoint.Checkpoint{Pipeline: p.cfg.Name}
	}
	p.health.setPhase("opening the source")
	if err := p.do(ctx, ComponentSource, func(ctx context.Context) error { return p.src.Open(ctx, cp.Position) }); err != nil {
		return stopped("open the source", err)
	}
	p.health.setPhase("")
	p.status.setCheckpoint(cp, p.now())
	return cp, true, nil
}

// summary logs what the run did, once, when Run returns.
func (p *Pipeline) summary(began time.Time, err error) {
	attrs := []any{"pipeline", p.cfg.Name, "events_read", p.nRead.Load(), "events_written", p.nWritten.Load(),
		"events_rejected", p.nRejected.Load(), "duration", p.now().Sub(began).Round(time.Millisecond)}
	// What the process cost so far: CPU (user + system) and bytes allocated
	// on the heap, for sizing a sidecar (make bench reads them too).
	if cpu, ok := processCPU(); ok {
		attrs = append(attrs, "cpu_seconds", math.Round(cpu.Seconds()*1000)/1000)
	}
	// The garbage collector's share: its cycles and the runtime's estimate
	// of the CPU they took (an estimate, see runtime/metrics).
	ms := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(ms)
	if ms[0].Value.Kind() == metrics.KindUint64 {
		attrs = append(attrs, "allocated_bytes", ms[0].Value.Uint64())
	}
	if ms[1].Value.Kind() == metrics.KindUint64 {
		attrs = append(attrs, "gc_cycles", ms[1].Value.Uint64())
	}
	if ms[2].Value.Kind() == metrics.KindFloat64 {
		attrs = append(attrs, "gc_cpu_seconds", math.Round(ms[2].Value.Float64()*1000)/1000)
	}
	if cp := p.status.get().Checkpoint; cp.Pipeline != "" {
		attrs = append(attrs, "checkpoint_events", cp.Events)
	}
	if err != nil {
		p.log.Info("pipeline stopped", append(attrs, "err", err.Error())...)
		return
	}
	p.log.Info("pipeline stopped", attrs...)
}

// progress logs, every progressEvery while events are written, how many, how
// fast, the time of the newest one and the lag behind it; it returns when ctx
// ends.
func (p *Pipeline) progress(ctx context.Context) {
	t := time.NewTicker(p.progressEvery)
	defer t.Stop()
	last, at := p.nWritten.Load(), p.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, now := p.nWritten.Load(), p.now()
		if n == last {
			continue // quiet: nothing to report
		}
		newest := time.UnixMilli(p.lastEvent.Load()).UTC()
		p.log.Info("progress", "events_written", n, "events_per_second", int(float64(n-last)/now.Sub(at).Seconds()),
			"position_time", newest.Format(time.RFC3339), "lag", now.Sub(newest).Round(time.Second))
		last, at = n, now
	}
}

// nopObserver is the Observer of a pipeline without metrics.
type nopObserver struct{}

func (nopObserver) BatchRead([]source.Event)                                   {}
func (nopObserver) Mapped(mapping.Stats)                                       {}
func (nopObserver) BatchWritten(int, map[string]int, time.Duration, time.Time) {}
func (nopObserver) CheckpointSaved(checkpoint.Checkpoint)                      {}
func (nopObserver) Attempt(string, string)                                     {}
func (nopObserver) Failure(string)                                             {}
func (nopObserver) Rejected(string, int)                                       {}
func (nopObserver) Window(int)                                                 {}

// IsPermanent reports whether err is marked permanent (internal/fault): such
// errors are not retried.
func IsPermanent(err error) bool { return fault.IsPermanent(err) }
