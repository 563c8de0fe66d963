package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
)

// Status is a snapshot of the pipeline's health, for /readyz.
type Status struct {
	Checkpoint checkpoint.Checkpoint // the last saved (or loaded) checkpoint
	SourceErr  error                 // the last source error, nil once a read succeeds
	SinkErr    error                 // the last sink error, nil once a write succeeds
	Running    bool                  // Run has loaded the checkpoint
	LastRead   time.Time             // when the source last returned events
	LastSave   time.Time             // when the last checkpoint was saved (or Run started)
}

type statusHolder struct {
	mu sync.Mutex
	s  Status
}

func (h *statusHolder) get() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.s
}

func (h *statusHolder) setCheckpoint(cp checkpoint.Checkpoint, at time.Time) {
	h.mu.Lock()
	h.s.Checkpoint, h.s.Running, h.s.LastSave = cp, true, at
	h.mu.Unlock()
}

func (h *statusHolder) setRead(at time.Time) {
	h.mu.Lock()
	h.s.LastRead = at
	h.mu.Unlock()
}

func (h *statusHolder) setSourceErr(err error) {
	h.mu.Lock()
	h.s.SourceErr = err
	h.mu.Unlock()
}

func (h *statusHolder) setSinkErr(err error) {
	h.mu.Lock()
	h.s.SinkErr = err
	h.mu.Unlock()
}

// Status returns the pipeline's current status; safe for concurrent use.
func (p *Pipeline) Status() Status { return p.status.get() }

// CheckpointFresh returns a readiness check that fails when the pipeline is not
// running yet, or when events were read after the last checkpoint and that
// checkpoint is older than maxAge: read events are not reaching ClickHouse. A
// quiet, caught-up source whose checkpoint is old is fresh.
func (p *Pipeline) CheckpointFresh(maxAge time.Duration) func(context.Context) error {
	return func(context.Context) error {
		s := p.status.get()
		if !s.Running {
			return errors.New("pipeline not running yet")
		}
		if !s.LastRead.After(s.LastSave) {
			return nil
		}
		if age := p.now().Sub(s.LastSave); age > maxAge {
			return fmt.Errorf("events read %s ago are not checkpointed: last checkpoint %s old (limit %s)",
				p.now().Sub(s.LastRead).Round(time.Second), age.Round(time.Second), maxAge)
		}
		return nil
	}
}

// SinkHealthy returns a readiness check that fails while the last write failed.
func (p *Pipeline) SinkHealthy() func(context.Context) error {
	return func(context.Context) error {
		if err := p.status.get().SinkErr; err != nil {
			return fmt.Errorf("last write failed: %w", err)
		}
		return nil
	}
}

// SourceHealthy returns a readiness check that fails while the last read failed.
func (p *Pipeline) SourceHealthy() func(context.Context) error {
	return func(context.Context) error {
		if err := p.status.get().SourceErr; err != nil {
			return fmt.Errorf("last read failed: %w", err)
		}
		return nil
	}
}
