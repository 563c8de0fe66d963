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

func (h *statusHolder) setCheckpoint(cp checkpoint.Checkpoint) {
	h.mu.Lock()
	h.s.Checkpoint, h.s.Running = cp, true
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
// running yet, or when its last checkpoint is older than maxAge while the
// pipeline has had time to save one. A caught-up pipeline still saves
// positions as its source advances, so an old checkpoint means a stall.
func (p *Pipeline) CheckpointFresh(maxAge time.Duration) func(context.Context) error {
	started := p.now()
	return func(context.Context) error {
		s := p.status.get()
		if !s.Running {
			return errors.New("pipeline not running yet")
		}
		last := s.Checkpoint.SavedAt
		if last.IsZero() || last.Before(started) {
			last = started
		}
		if age := p.now().Sub(last); age > maxAge {
			return fmt.Errorf("last checkpoint is %s old (limit %s)", age.Round(time.Second), maxAge)
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
