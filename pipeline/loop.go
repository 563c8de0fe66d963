package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/source"
)

// window bounds the batches between the batcher and the committer: a batch
// takes a slot before it is mapped and gives it back once its position is
// saved and acknowledged. Since positions are committed in batch order, a
// batch N can exist only while N < (oldest unacknowledged batch) + size,
// whatever fails: memory, the replay after a crash and the WAL a PostgreSQL
// slot holds are bounded by size batches.
type window struct{ slots chan struct{} }

func newWindow(size int) *window { return &window{slots: make(chan struct{}, size)} }

// take blocks until a slot is free or ctx ends.
func (w *window) take(ctx context.Context) error {
	select {
	case w.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// free gives back n slots.
func (w *window) free(n int) {
	for range n {
		<-w.slots
	}
}

func (w *window) inUse() int { return len(w.slots) }

// pending is a batch being assembled from source batches.
type pending struct {
	events   []source.Event
	position source.Position
	moved    bool // position advanced since the last flush
}

// mapped is a batch ready for the writers.
type mapped struct {
	seq       uint64         // batch number, from 0: positions are saved in this order
	events    []source.Event // kept until written: isolating a refused row re-maps parts
	opts      mapping.Options
	rows      *mapping.Rows  // dropped once written
	tableRows map[string]int // rows written per table, for the observer
	position  source.Position
	lastEvent time.Time
	n         int // events in the batch
}

// replicate runs the reader, the batcher and the writers until ctx is done
// (then drains) or a permanent error occurs.
func (p *Pipeline) replicate(ctx context.Context, cp checkpoint.Checkpoint) error {
	// readCtx stops the reader (on shutdown or failure); writeCtx outlives it
	// by the drain, bounded by ShutdownTimeout once ctx is done.
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	writeCtx, cancelWrite := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWrite()
	var timedOut atomic.Bool
	go func() {
		select {
		case <-ctx.Done():
			p.log.Info("shutting down: draining in-flight batches", "timeout", p.cfg.ShutdownTimeout.String())
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

	go p.progress(readCtx)
	reads := make(chan source.Batch, 1)
	toWrite := make(chan *mapped, p.cfg.InFlight)
	win := newWindow(p.cfg.Window())
	errc := make(chan error, 2)
	go func() { errc <- p.read(readCtx, reads) }()
	go func() { errc <- p.batch(writeCtx, reads, toWrite, win) }()
	writeErr := p.write(writeCtx, toWrite, win, cp)
	stopReading()
	if writeErr != nil {
		cancelWrite() // unblocks the batcher, which may wait for a slot or a writer
	}
	var errs []error
	if writeErr != nil {
		errs = append(errs, writeErr)
	}
	for range 2 { // the batcher ends when the reader has closed reads, or on writeCtx
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

// read calls the source until ctx is done, the source ends (io.EOF) or fails
// permanently; it closes out when it returns. Transient failures are retried
// by do: the source resumes where its last batch ended.
func (p *Pipeline) read(ctx context.Context, out chan<- source.Batch) error {
	defer close(out)
	for {
		var b source.Batch
		eof := false
		err := p.retry(ctx, ComponentSource, false, func(ctx context.Context) error {
			var err error
			b, err = p.src.Read(ctx, p.cfg.BatchEvents)
			if errors.Is(err, io.EOF) {
				p.log.Info("source reached its end", "reason", err.Error())
				eof, err = true, nil
			}
			return err
		})
		if ctx.Err() != nil {
			return nil // shutting down: a batch read now is simply read again next time
		}
		if err != nil {
			return fmt.Errorf("read source: %w", fault.Permanent(err))
		}
		if len(b.Events) > 0 {
			p.status.setRead(p.now())
			p.obs.BatchRead(b.Events)
			p.nRead.Add(uint64(len(b.Events)))
		}
		if len(b.Events) > 0 || b.Position != "" || !eof {
			select {
			case out <- b:
			case <-ctx.Done():
				return nil
			}
		}
		if eof {
			// The source is finished (e.g. --api.end reached): what was read
			// is written and checkpointed, and Run returns nil.
			return nil
		}
	}
}

// presizeEvents bounds the capacity a new batch starts with, so that a huge
// --pipeline.batch-events does not allocate its full size for every trickle.
const presizeEvents = 16 << 10

// batch assembles source batches into batches of BatchEvents or BatchAge,
// takes a window slot for each, enriches and maps it, and queues it for the
// writers. When in is closed it flushes what it has and closes out.
//
// The end of a backlog is not held back for BatchAge: while the pipeline is
// working through a backlog (at start, and after a batch filled up), an
// empty source batch (the source has caught up: an idle WAL, a caught-up
// paging token) flushes what is pending at once. Once caught up, a trickle of
// new events is batched by BatchAge again, so ClickHouse does not get one
// INSERT per event.
func (p *Pipeline) batch(ctx context.Context, in <-chan source.Batch, out chan<- *mapped, win *window) error {
	defer close(out)
	var cur pending
	var seq uint64
	draining := true  // working through a backlog
	caughtUp := false // logged once: the first backlog is read
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() error {
		if len(cur.events) == 0 && !cur.moved {
			return nil
		}
		timer.Stop()
		if err := win.take(ctx); err != nil {
			return nil // shutting down or failed: the writers report why
		}
		p.obs.Window(win.inUse())
		m, err := p.mapBatch(ctx, cur)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		m.seq = seq
		seq++
		cur = pending{position: cur.position}
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
				size := max(min(p.cfg.BatchEvents, presizeEvents), len(b.Events))
				if evs, ok := p.eventsPool.Get(); ok && cap(evs) >= size {
					cur.events = evs[:0]
				} else {
					cur.events = make([]source.Event, 0, size)
				}
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
			if len(b.Events) == 0 && !caughtUp {
				caughtUp = true
				p.log.Info("caught up with the source: the backlog is read; new events are written within --pipeline.batch-age",
					"events_read", p.nRead.Load(), "position", string(b.Position))
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

// mapBatch enriches and maps a pending batch. With --reject.policy=stop, an
// event the source could not read stops the pipeline here.
func (p *Pipeline) mapBatch(ctx context.Context, cur pending) (*mapped, error) {
	if p.cfg.RejectPolicy == RejectStop {
		for _, e := range cur.events {
			if e.Reject != "" {
				return nil, fault.Permanent(fmt.Errorf("event %q (type %q) cannot be read: %s; --reject.policy=%s stops here (with %s it goes to the _tributary_rejects table)",
					e.Locator, e.Type, e.Reject, RejectStop, RejectQuarantine))
			}
		}
	}
	opts := mapping.Options{Pipeline: p.cfg.Name, IngestedAt: p.now().UTC(), Position: string(cur.position), TrustData: true}
	if p.enrich != nil && len(cur.events) > 0 {
		err := p.do(ctx, ComponentEnrich, func(ctx context.Context) error {
			full, err := p.enrich.Complete(ctx, cur.events)
			opts.FullPolicyLocators = full
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("enrich policy locators: %w", fault.Permanent(err))
		}
	}
	rows, ok := p.rowsPool.Get()
	if !ok {
		rows = mapping.NewRows()
	}
	stats := mapping.Map(source.Batch{Events: cur.events, Position: cur.position}, opts, rows)
	p.obs.Mapped(stats)
	for kind, n := range stats.Rejected {
		p.obs.Rejected(kind, n)
		p.nRejected.Add(uint64(n))
	}
	m := &mapped{events: cur.events, opts: opts, rows: rows, position: cur.position, n: len(cur.events)}
	for i := len(cur.events) - 1; i >= 0; i-- {
		if t := cur.events[i].Timestamp; !t.IsZero() { // a reject may have no time
			m.lastEvent = t
			break
		}
	}
	return m, nil
}
