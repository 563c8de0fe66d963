// Package pipeline runs one replication: read batches from a source, map them
// to rows, write the rows to the sink, save the position, acknowledge it to the
// source. Reading overlaps with writing, with a bounded number of batches in
// flight, so memory stays flat whatever the input.
//
//	reader ──(source batches)──▶ batcher ──(mapped batches, ≤ InFlight)──▶ writer
//	                               map, enrich                       write, save, ack
//
// A position is saved only after every row before it is in the sink, and
// acknowledged only after it is saved.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/internal/backoff"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/sink"
	"github.com/tributary-cdc/tributary/source"
)

// Config tunes batching and shutdown.
type Config struct {
	Name            string        // pipeline name: the checkpoint key and the rows' _source
	BatchEvents     int           // flush when this many events are pending
	BatchAge        time.Duration // flush when the oldest pending event is this old
	InFlight        int           // mapped batches queued for the writers at most
	Writers         int           // batches written to the sink concurrently
	ShutdownTimeout time.Duration // how long the drain on shutdown may take
	RetryMax        time.Duration // the longest pause between retries of a failed write or save
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
	}
}

// RegisterFlags adds the pipeline's flags to fs, with c's values as defaults.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Name, "pipeline.name", c.Name, "pipeline name: the checkpoint key and the _source column of every row")
	fs.IntVar(&c.BatchEvents, "pipeline.batch-events", c.BatchEvents, "write a batch when this many events are pending")
	fs.DurationVar(&c.BatchAge, "pipeline.batch-age", c.BatchAge, "write a batch when its oldest event has waited this long")
	fs.IntVar(&c.InFlight, "pipeline.in-flight", c.InFlight, "mapped batches queued for writing at most (bounds memory)")
	fs.IntVar(&c.Writers, "pipeline.writers", c.Writers, "batches written to ClickHouse concurrently; positions are still saved in order")
	fs.DurationVar(&c.ShutdownTimeout, "pipeline.shutdown-timeout", c.ShutdownTimeout, "how long draining on SIGTERM may take before the process gives up")
	fs.DurationVar(&c.RetryMax, "pipeline.retry-max", c.RetryMax, "the longest pause between retries of a failed write or checkpoint save")
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
	return errors.Join(errs...)
}

// Enricher completes data the source left incomplete, such as partial policy
// locator lists; the result is keyed by event locator. It may be nil.
type Enricher interface {
	Complete(ctx context.Context, events []source.Event) (map[string][]string, error)
}

// Observer receives what the pipeline does, for metrics. Every method must be
// cheap and safe for concurrent use. Nil means none.
type Observer interface {
	BatchRead(events []source.Event)
	Mapped(stats mapping.Stats)
	BatchWritten(events int, tableRows map[string]int, d time.Duration, lastEvent time.Time)
	CheckpointSaved(cp checkpoint.Checkpoint)
	Retry(component, reason string)
	Error(component string)
}

// Pipeline is one replication from a source into a sink.
type Pipeline struct {
	cfg    Config
	src    source.Source
	snk    sink.Sink
	store  checkpoint.Store
	enrich Enricher
	obs    Observer
	log    *slog.Logger
	now    func() time.Time

	lease checkpoint.Lease // the generation Run acquired

	// Set by Run; read by Status from other goroutines.
	status statusHolder
}

// New returns a pipeline; enrich and obs may be nil.
func New(cfg Config, src source.Source, snk sink.Sink, store checkpoint.Store, enrich Enricher, obs Observer, logger *slog.Logger) *Pipeline {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{cfg: cfg, src: src, snk: snk, store: store, enrich: enrich, obs: obs, log: logger, now: time.Now}
}

// pending is a batch being assembled from source batches.
type pending struct {
	events   []source.Event
	position source.Position
	moved    bool // position advanced since the last flush
}

// mapped is a batch ready for the writer.
type mapped struct {
	seq       uint64 // batch number, from 0: positions are saved in this order
	events    int
	rows      *mapping.Rows  // dropped once written
	tableRows map[string]int // rows per table, kept for the observer
	position  source.Position
	lastEvent time.Time
}

// Run replicates until ctx is done or a permanent error occurs. When ctx is
// cancelled it stops reading, writes what it has read, saves the checkpoint,
// acknowledges it and returns nil (within ShutdownTimeout; after that it
// returns an error). The source must not have been opened yet; Run opens it
// from the saved checkpoint and closes it.
func (p *Pipeline) Run(ctx context.Context) error {
	cp, found, err := p.loadCheckpoint(ctx)
	if err != nil {
		return err
	}
	if found {
		p.log.Info("resuming from checkpoint", "pipeline", p.cfg.Name, "events", cp.Events, "saved_at", cp.SavedAt)
	} else {
		p.log.Info("no checkpoint: starting from the configured start", "pipeline", p.cfg.Name)
		cp = checkpoint.Checkpoint{Pipeline: p.cfg.Name}
	}
	p.status.setCheckpoint(cp, p.now())
	if err := p.src.Open(ctx, cp.Position); err != nil {
		return fmt.Errorf("open source: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.src.Close(cctx); err != nil {
			p.log.Warn("close source", "err", err)
		}
	}()

	// readCtx stops the reader (on shutdown or failure); writeCtx outlives it
	// by the drain, bounded by ShutdownTimeout once ctx is done.
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	writeCtx, cancelWrite := context.WithCancel(context.Background())
	defer cancelWrite()
	var timedOut atomic.Bool
	go func() {
		select {
		case <-ctx.Done():
			p.log.Info("shutting down: draining in-flight batches", "timeout", p.cfg.ShutdownTimeout)
			t := time.NewTimer(p.cfg.ShutdownTimeout)
			defer t.Stop()
			select {
			case <-t.C:
				timedOut.Store(true)
				cancelWrite()
			case <-writeCtx.Done():
			}
		case <-writeCtx.Done():
		}
	}()

	reads := make(chan source.Batch, 1)
	toWrite := make(chan mapped, p.cfg.InFlight)
	errc := make(chan error, 3)

	go func() { errc <- p.read(readCtx, reads) }()
	go func() { errc <- p.batch(writeCtx, reads, toWrite) }()
	writeErr := p.write(writeCtx, toWrite, cp)
	stopReading()
	if writeErr != nil {
		cancelWrite() // unblocks the batcher, which may wait to hand over a batch
	}
	var errs []error
	if writeErr != nil {
		errs = append(errs, writeErr)
	}
	// The batcher ends when the reader has closed reads, or on writeCtx.
	for range 2 {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if timedOut.Load() {
		return fmt.Errorf("shutdown: drain not finished within --pipeline.shutdown-timeout %s; the batches not written are read again on the next start (checkpoint at %d events)",
			p.cfg.ShutdownTimeout, p.status.get().Checkpoint.Events)
	}
	if ctx.Err() != nil {
		p.log.Info("drained and checkpointed", "pipeline", p.cfg.Name, "events", p.status.get().Checkpoint.Events)
	}
	return nil
}

func (p *Pipeline) loadCheckpoint(ctx context.Context) (checkpoint.Checkpoint, bool, error) {
	for attempt := 0; ; attempt++ {
		lease, cp, found, err := p.store.Acquire(ctx, p.cfg.Name)
		p.lease = lease
		if err == nil {
			return cp, found, nil
		}
		if IsPermanent(err) || ctx.Err() != nil {
			return cp, false, fmt.Errorf("load checkpoint of %q: %w", p.cfg.Name, err)
		}
		p.retried("checkpoint", err, attempt)
		if err := p.sleep(ctx, attempt); err != nil {
			return cp, false, fmt.Errorf("load checkpoint of %q: %w", p.cfg.Name, errors.Join(err, ctx.Err()))
		}
	}
}

// read calls the source until ctx is done; it closes out when it returns.
func (p *Pipeline) read(ctx context.Context, out chan<- source.Batch) error {
	defer close(out)
	attempt := 0 // failed reads in a row
	for {
		b, err := p.src.Read(ctx, p.cfg.BatchEvents)
		if ctx.Err() != nil {
			return nil // shutting down: a batch read now is simply read again next time
		}
		if errors.Is(err, io.EOF) {
			// The source is finished (e.g. --api.end reached): what was read is
			// written and checkpointed, and Run returns nil.
			p.log.Info("source reached its end", "reason", err)
			if len(b.Events) > 0 || b.Position != "" {
				select {
				case out <- b:
				case <-ctx.Done():
				}
			}
			return nil
		}
		if err != nil {
			p.status.setSourceErr(err)
			if IsPermanent(err) {
				if p.obs != nil {
					p.obs.Error("source")
				}
				return fmt.Errorf("read source: %w", err)
			}
			// A transient failure: the source resumes on the next Read.
			p.retried("source", err, attempt)
			wait := max(backoff.Delay(attempt, 100*time.Millisecond, p.cfg.RetryMax), fault.RetryAfter(err))
			attempt++
			if backoff.Sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		attempt = 0
		p.status.setSourceErr(nil)
		if len(b.Events) > 0 {
			p.status.setRead(p.now())
			if p.obs != nil {
				p.obs.BatchRead(b.Events)
			}
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return nil
		}
	}
}

// presizeEvents bounds the capacity a new batch starts with, so that a huge
// --pipeline.batch-events does not allocate its full size for every trickle.
const presizeEvents = 16 << 10

// batch assembles source batches into batches of BatchEvents or BatchAge,
// enriches and maps them, and queues them for the writer. When in is closed
// it flushes what it has and closes out.
//
// The end of a backlog is not held back for BatchAge: while the pipeline is
// working through a backlog (at start, and after a batch filled up), an
// empty source batch (the source has caught up: an idle WAL, a caught-up
// paging token) flushes what is pending at once. Once caught up, a trickle of
// new events is batched by BatchAge again, so ClickHouse does not get one
// INSERT per event.
func (p *Pipeline) batch(ctx context.Context, in <-chan source.Batch, out chan<- mapped) error {
	defer close(out)
	var cur pending
	var seq uint64
	draining := true // working through a backlog
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() error {
		if len(cur.events) == 0 && !cur.moved {
			return nil
		}
		m, err := p.mapBatch(ctx, cur)
		if err != nil {
			return err
		}
		m.seq = seq
		seq++
		cur = pending{position: cur.position}
		timer.Stop()
		select {
		case out <- m:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	for {
		select {
		case b, ok := <-in:
			if !ok {
				return flush()
			}
			if len(cur.events) == 0 && !cur.moved {
				timer.Reset(p.cfg.BatchAge)
			}
			if cur.events == nil && len(b.Events) > 0 {
				// Sized for a whole batch (up to presizeEvents): a backlog
				// fills it without growing (and copying) it on the way.
				cur.events = make([]source.Event, 0, max(min(p.cfg.BatchEvents, presizeEvents), len(b.Events)))
			}
			cur.events = append(cur.events, b.Events...)
			if b.Position != cur.position || len(b.Events) > 0 {
				cur.moved = true
			}
			cur.position = b.Position
			switch {
			case len(cur.events) >= p.cfg.BatchEvents:
				draining = true
				if err := flush(); err != nil {
					return err
				}
			case len(b.Events) == 0 && draining && len(cur.events) > 0:
				draining = false // the source caught up: write the backlog's tail now
				if err := flush(); err != nil {
					return err
				}
			}
		case <-timer.C:
			draining = false
			if err := flush(); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (p *Pipeline) mapBatch(ctx context.Context, cur pending) (mapped, error) {
	opts := mapping.Options{Pipeline: p.cfg.Name, IngestedAt: p.now().UTC()}
	if p.enrich != nil && len(cur.events) > 0 {
		for attempt := 0; ; attempt++ {
			full, err := p.enrich.Complete(ctx, cur.events)
			if err == nil {
				opts.FullPolicyLocators = full
				break
			}
			if IsPermanent(err) || ctx.Err() != nil {
				return mapped{}, fmt.Errorf("enrich policy locators: %w", err)
			}
			p.retried("enrich", err, attempt)
			if err := p.sleep(ctx, attempt); err != nil {
				return mapped{}, fmt.Errorf("enrich policy locators: gave up while shutting down: %w", err)
			}
		}
	}
	rows := mapping.NewRows()
	stats := mapping.Map(source.Batch{Events: cur.events, Position: cur.position}, opts, rows)
	if p.obs != nil {
		p.obs.Mapped(stats)
	}
	m := mapped{events: len(cur.events), rows: rows, position: cur.position}
	if n := len(cur.events); n > 0 {
		m.lastEvent = cur.events[n-1].Timestamp
	}
	return m, nil
}

// write writes the mapped batches with Writers concurrent writers, so that
// building one batch's blocks overlaps with ClickHouse storing the previous
// one. Positions are saved strictly in batch order: a position is saved (and
// then acknowledged) only when its batch and every batch before it are
// written. A failed write or save is retried with backoff until it succeeds, a
// permanent error occurs, or ctx is done.
func (p *Pipeline) write(ctx context.Context, in <-chan mapped, cp checkpoint.Checkpoint) error {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	type written struct {
		m    mapped
		took time.Duration
		err  error
	}
	results := make(chan written, p.cfg.Writers)
	var wg sync.WaitGroup
	for range p.cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var m mapped
				var ok bool
				select {
				case m, ok = <-in:
				case <-wctx.Done():
					return
				}
				if !ok {
					return
				}
				start := p.now()
				var err error
				if m.rows.Len() > 0 {
					err = p.retry(wctx, "sink", func() error { return p.snk.Write(wctx, m.rows) })
					if err != nil {
						err = fmt.Errorf("write %d events: %w", m.events, err)
					}
				}
				// The rows are in ClickHouse (or failed): let them go now
				// rather than when every earlier batch is written too.
				m.tableRows, m.rows = m.rows.Counts(), nil
				results <- written{m: m, took: p.now().Sub(start), err: err}
			}
		}()
	}
	go func() { wg.Wait(); close(results) }()

	var firstErr error
	done := map[uint64]written{} // written batches waiting for an earlier one
	next := uint64(0)            // the sequence number of the next batch to commit
	for r := range results {
		if r.err != nil || firstErr != nil {
			if firstErr == nil {
				firstErr = r.err
				stop() // the other writers end; nothing after this batch is saved
			}
			continue
		}
		done[r.m.seq] = r
		advanced := false
		for {
			w, ok := done[next]
			if !ok {
				break
			}
			delete(done, next)
			next++
			if p.obs != nil && w.m.events > 0 {
				p.obs.BatchWritten(w.m.events, w.m.tableRows, w.took, w.m.lastEvent)
			}
			if w.m.position != cp.Position || w.m.events > 0 {
				cp.Position = w.m.position
				cp.Events += uint64(w.m.events)
				advanced = true
			}
			p.log.Debug("batch written", "events", w.m.events, "rows", sum(w.m.tableRows), "duration", w.took)
		}
		p.status.setSinkErr(nil)
		if !advanced {
			continue
		}
		if err := p.commit(wctx, &cp); err != nil {
			firstErr = err
			stop()
		}
	}
	if firstErr != nil && ctx.Err() != nil && !IsPermanent(firstErr) {
		return nil // shut down while retrying: the next start replays from the saved checkpoint
	}
	return firstErr
}

// commit saves cp and acknowledges its position to the source.
func (p *Pipeline) commit(ctx context.Context, cp *checkpoint.Checkpoint) error {
	cp.SavedAt = p.now().UTC()
	if err := p.retry(ctx, "checkpoint", func() error { return p.store.Save(ctx, p.lease, *cp) }); err != nil {
		return fmt.Errorf("save checkpoint after %d events: %w", cp.Events, err)
	}
	p.status.setCheckpoint(*cp, p.now())
	if p.obs != nil {
		p.obs.CheckpointSaved(*cp)
	}
	if err := p.src.Ack(ctx, cp.Position); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("acknowledge position to source: %w", err)
	}
	return nil
}

func (p *Pipeline) retry(ctx context.Context, component string, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if component == "sink" {
			p.status.setSinkErr(err)
		}
		if IsPermanent(err) {
			if p.obs != nil {
				p.obs.Error(component)
			}
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("gave up while shutting down: %w", err)
		}
		p.retried(component, err, attempt)
		if err := p.sleep(ctx, attempt); err != nil {
			return fmt.Errorf("gave up while shutting down: %w", err)
		}
	}
}

func (p *Pipeline) retried(component string, err error, attempt int) {
	if p.obs != nil {
		p.obs.Retry(component, retryReason(err))
		p.obs.Error(component)
	}
	p.log.Warn("retrying", "component", component, "attempt", attempt+1, "err", err)
}

// sleep waits the backoff of attempt, at most RetryMax, or until ctx is done.
func (p *Pipeline) sleep(ctx context.Context, attempt int) error {
	return backoff.Sleep(ctx, backoff.Delay(attempt, 100*time.Millisecond, p.cfg.RetryMax))
}

// retryReason classifies err into the bounded reasons of the retry metric.
func retryReason(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "network"
	default:
		return "other"
	}
}

// IsPermanent reports whether err says so through a Permanent() bool method
// anywhere in its chain: such errors are not retried.
func IsPermanent(err error) bool {
	var pe interface{ Permanent() bool }
	if errors.As(err, &pe) {
		return pe.Permanent()
	}
	return false
}

// sum adds up the values of m.
func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
