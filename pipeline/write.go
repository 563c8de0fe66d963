package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/source"
)

// write writes the mapped batches with Writers concurrent writers, so that
// building one batch's blocks overlaps with ClickHouse storing the previous
// one, and commits them in batch order: a position is saved (and then
// acknowledged, and its window slot freed) only when its batch and every
// batch before it are written. A failed write or save is retried by do
// until it succeeds, fails permanently, or ctx is done; a batch ClickHouse
// refuses for its content is cut down until the refused events are found
// and quarantined.
func (p *Pipeline) write(ctx context.Context, in <-chan *mapped, win *window, cp checkpoint.Checkpoint) error {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	type written struct {
		m    *mapped
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
				var m *mapped
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
				err := p.writeBatch(wctx, m)
				if err != nil {
					err = fmt.Errorf("write %d events: %w", m.n, err)
				}
				// The rows are in ClickHouse (or failed): let them go now
				// rather than when every earlier batch is written too, for
				// the next batches to reuse.
				p.recycle(m)
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
		committed := 0
		advanced := false
		for {
			w, ok := done[next]
			if !ok {
				break
			}
			delete(done, next)
			next++
			committed++
			if w.m.n > 0 {
				p.obs.BatchWritten(w.m.n, w.m.tableRows, w.took, w.m.lastEvent)
				p.nWritten.Add(uint64(w.m.n))
				p.lastEvent.Store(w.m.lastEvent.UnixMilli())
			}
			if w.m.position != cp.Position || w.m.n > 0 {
				cp.Position = w.m.position
				cp.Events += uint64(w.m.n)
				advanced = true
			}
			p.log.Debug("batch written", "events", w.m.n, "rows", sum(w.m.tableRows), "duration", w.took.String())
		}
		if advanced {
			if err := p.commit(wctx, &cp); err != nil {
				firstErr = err
				stop()
				continue
			}
		}
		win.free(committed)
		p.obs.Window(win.inUse())
	}
	if firstErr != nil && ctx.Err() != nil && !IsPermanent(firstErr) {
		return nil // shut down while retrying: the next start replays from the saved checkpoint
	}
	return firstErr
}

// recycle hands m's rows and events to the next batches (cleared, so that
// they hold on to nothing) and forgets them.
func (p *Pipeline) recycle(m *mapped) {
	if m.rows != nil {
		m.rows.Reset()
		p.rowsPool.Put(m.rows)
	}
	if m.events != nil {
		evs := m.events[:cap(m.events)]
		clear(evs)
		p.eventsPool.Put(evs[:0])
	}
	m.rows, m.events = nil, nil
}

// writeBatch writes m's rows. When ClickHouse refuses them for their content
// (a poison error), the batch's events are cut in halves, each half mapped
// and written again, until the refused events are found; each of those is
// quarantined (or, with --reject.policy=stop, stops the pipeline).
func (p *Pipeline) writeBatch(ctx context.Context, m *mapped) error {
	if m.rows.Len() == 0 {
		m.tableRows = map[string]int{}
		return nil
	}
	err := p.do(ctx, ComponentSink, func(ctx context.Context) error { return p.snk.Write(ctx, m.rows) })
	if !fault.IsPoison(err) {
		m.tableRows = m.rows.Counts()
		return err
	}
	p.log.Warn("ClickHouse refused a batch for its content: looking for the refused events", "events", m.n, "reason", err.Error())
	m.tableRows = map[string]int{}
	return p.isolate(ctx, m, m.events, err)
}

// isolate writes evs, a part of m's events whose rows were refused with
// cause, in halves; a single refused event is quarantined.
func (p *Pipeline) isolate(ctx context.Context, m *mapped, evs []source.Event, cause error) error {
	if len(evs) == 1 {
		return p.quarantine(ctx, m, evs[0], cause)
	}
	half := len(evs) / 2
	for _, part := range [][]source.Event{evs[:half], evs[half:]} {
		rows := mapping.NewRows()
		mapping.Map(source.Batch{Events: part}, m.opts, rows)
		err := p.do(ctx, ComponentSink, func(ctx context.Context) error { return p.snk.Write(ctx, rows) })
		switch {
		case err == nil:
			addCounts(m.tableRows, rows.Counts())
		case fault.IsPoison(err):
			if err := p.isolate(ctx, m, part, err); err != nil {
				return err
			}
		default:
			return err
		}
	}
	return nil
}

// quarantine writes ev, whose rows ClickHouse refused with cause, to the
// rejects table with its raw bytes (the event as JSON).
func (p *Pipeline) quarantine(ctx context.Context, m *mapped, ev source.Event, cause error) error {
	if p.cfg.RejectPolicy == RejectStop {
		return fault.Permanent(fmt.Errorf("ClickHouse refused event %q (type %q, %s): %v; --reject.policy=%s stops here (with %s it goes to the _tributary_rejects table)",
			ev.Locator, ev.Type, ev.Timestamp.Format(time.RFC3339Nano), cause, RejectStop, RejectQuarantine))
	}
	raw, err := json.Marshal(rawEvent(ev))
	if err != nil {
		return fault.Permanent(fmt.Errorf("quarantine event %q: %w", ev.Locator, err))
	}
	ev.Reject = mapping.RejectReason(mapping.RejectRefused, cause.Error())
	ev.Data = raw
	rows := mapping.NewRows()
	mapping.Map(source.Batch{Events: []source.Event{ev}}, m.opts, rows)
	err = p.do(ctx, ComponentSink, func(ctx context.Context) error { return p.snk.Write(ctx, rows) })
	if fault.IsPoison(err) {
		return fault.Permanent(fmt.Errorf("quarantine event %q: ClickHouse refused its rejects row too: %w (the event was refused with: %v)", ev.Locator, err, cause))
	}
	if err != nil {
		return err
	}
	addCounts(m.tableRows, rows.Counts())
	p.obs.Rejected(mapping.RejectRefused, 1)
	p.nRejected.Add(1)
	p.log.Warn("event quarantined: ClickHouse refused it", "locator", ev.Locator, "type", ev.Type, "reason", cause.Error())
	return nil
}

// rawEvent is the JSON form of an event refused by ClickHouse, stored as its
// raw bytes in the rejects table: every field, the payload as it came.
func rawEvent(e source.Event) any {
	return struct {
		Locator       string          `json:"locator"`
		RequestID     string          `json:"requestId,omitempty"`
		UserLocator   string          `json:"userLocator,omitempty"`
		Username      string          `json:"username,omitempty"`
		TransactionID string          `json:"transactionId,omitempty"`
		Tenant        string          `json:"tenant"`
		Type          string          `json:"type"`
		Timestamp     string          `json:"timestamp"`
		Flavor        string          `json:"flavor"`
		Data          json.RawMessage `json:"data"`
	}{e.Locator, e.RequestID, e.UserLocator, e.Username, e.TransactionID, e.Tenant, e.Type,
		e.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z07:00"), e.Flavor, validJSON(e.Data)}
}

// validJSON returns d, or d as a JSON string when it is not valid JSON.
func validJSON(d json.RawMessage) json.RawMessage {
	if json.Valid(d) {
		return d
	}
	s, _ := json.Marshal(string(d))
	return s
}

// commit saves cp and acknowledges its position to the source. The save is
// retried by do; a fenced lease (another process, or a reset) is permanent.
// The acknowledgement is tried once: a later commit acknowledges a later
// position anyway.
func (p *Pipeline) commit(ctx context.Context, cp *checkpoint.Checkpoint) error {
	cp.SavedAt = p.now().UTC()
	cp.Generation = p.lease.Generation
	if err := p.do(ctx, ComponentCheckpoint, func(ctx context.Context) error { return p.store.Save(ctx, p.lease, *cp) }); err != nil {
		return fmt.Errorf("save checkpoint after %d events: %w", cp.Events, err)
	}
	p.status.setCheckpoint(*cp, p.now())
	p.obs.CheckpointSaved(*cp)
	if err := p.src.Ack(ctx, cp.Position); err != nil && ctx.Err() == nil {
		if IsPermanent(err) {
			p.obs.Failure(ComponentSource)
			return fmt.Errorf("acknowledge position to source: %w", err)
		}
		p.health.fail(ComponentSource, fmt.Errorf("acknowledge position: %w", err))
		p.log.Warn("acknowledging the position to the source failed; the next checkpoint acknowledges a later one", "err", err)
	}
	return nil
}

func addCounts(dst, src map[string]int) {
	for k, v := range src {
		dst[k] += v
	}
}

// sum adds up the values of m.
func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
