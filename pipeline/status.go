package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/sink"
)

// ComponentState is what the pipeline knows of one component's health.
type ComponentState struct {
	Healthy      bool      // the last attempt succeeded (or none failed yet)
	FailingSince time.Time // when the current run of failures began; zero when healthy
	Failures     int       // failed attempts in a row
	LastErr      error     // the last failure; nil when healthy
	WaitingSince time.Time // when the oldest attempt still running began; zero when none runs
}

// health is the one health table of the process: every attempt of every
// component lands here (do), and readiness is answered from it without any
// I/O.
type health struct {
	mu      sync.Mutex
	now     func() time.Time
	comps   map[string]*ComponentState
	running map[string]map[uint64]time.Time // component → attempts running, by id → start
	nextID  uint64
	phase   string // what start-up is doing; "" once running
}

func (h *health) init(now func() time.Time) {
	h.now = now
	h.comps = map[string]*ComponentState{}
	h.running = map[string]map[uint64]time.Time{}
	h.phase = "not started"
}

// begin records that an attempt of c starts; end(id) records that it
// returned. An attempt that does not return (a server that stopped
// answering) shows in readiness once it has run longer than the grace.
func (h *health) begin(c string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextID++
	if h.running[c] == nil {
		h.running[c] = map[uint64]time.Time{}
	}
	h.running[c][h.nextID] = h.now()
	return h.nextID
}

func (h *health) end(c string, id uint64) {
	h.mu.Lock()
	delete(h.running[c], id)
	h.mu.Unlock()
}

func (h *health) state(c string) *ComponentState {
	s := h.comps[c]
	if s == nil {
		s = &ComponentState{Healthy: true}
		h.comps[c] = s
	}
	return s
}

func (h *health) ok(c string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.state(c) = ComponentState{Healthy: true}
}

func (h *health) fail(c string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.state(c)
	if s.Healthy {
		s.FailingSince = h.now()
	}
	s.Healthy, s.LastErr = false, err
	s.Failures++
}

func (h *health) setPhase(phase string) {
	h.mu.Lock()
	h.phase = phase
	h.mu.Unlock()
}

// snapshot returns the phase and a copy of every component's state.
func (h *health) snapshot() (string, map[string]ComponentState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]ComponentState, len(h.comps))
	for c, s := range h.comps {
		out[c] = *s
	}
	for c, attempts := range h.running {
		for _, start := range attempts {
			s, ok := out[c]
			if !ok {
				s = ComponentState{Healthy: true}
			}
			if s.WaitingSince.IsZero() || start.Before(s.WaitingSince) {
				s.WaitingSince = start
			}
			out[c] = s
		}
	}
	return h.phase, out
}

// Status is a snapshot of the pipeline, for readiness, status pages and tests.
type Status struct {
	Phase      string                    // what start-up is doing; "" once running
	Components map[string]ComponentState // by Component constant
	Checkpoint checkpoint.Checkpoint     // the last saved (or loaded) checkpoint
	Running    bool                      // start-up is done
	LastRead   time.Time                 // when the source last returned events
	LastSave   time.Time                 // when the last checkpoint was saved (or Run started)
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

// Status returns the pipeline's current status; safe for concurrent use.
func (p *Pipeline) Status() Status {
	s := p.status.get()
	s.Phase, s.Components = p.health.snapshot()
	return s
}

// Ready returns the readiness check of the pipeline, answered from its
// health table without any I/O. It fails, naming every reason:
//   - during start-up, with what start-up is doing and every failing
//     component (a server unreachable at start is retried like any outage);
//   - while a component has been failing for longer than FailureGrace, or
//     one of its calls has not returned for that long (a server that stopped
//     answering);
//   - when events were read after the last checkpoint and that checkpoint is
//     older than maxCheckpointAge: read events are not reaching ClickHouse (a
//     quiet, caught-up source whose checkpoint is old is fine).
//
// When none of these holds but the sink is a sink.Degrader that reports a
// degraded state (a ClickHouse replica unreachable, the others serving), it
// returns a DegradedError: ready, with the reasons.
func (p *Pipeline) Ready(maxCheckpointAge time.Duration) func(context.Context) error {
	return func(context.Context) error {
		s := p.Status()
		now := p.now()
		var problems []string
		if !s.Running {
			problems = append(problems, "starting: "+s.Phase)
		}
		names := make([]string, 0, len(s.Components))
		for c := range s.Components {
			names = append(names, c)
		}
		sort.Strings(names)
		for _, c := range names {
			cs := s.Components[c]
			if !cs.WaitingSince.IsZero() && now.Sub(cs.WaitingSince) >= p.cfg.FailureGrace {
				problems = append(problems, fmt.Sprintf("%s: no answer for %s (waiting since %s)",
					c, now.Sub(cs.WaitingSince).Round(time.Second), cs.WaitingSince.UTC().Format(time.RFC3339)))
			}
			if cs.Healthy || (s.Running && now.Sub(cs.FailingSince) < p.cfg.FailureGrace) {
				continue
			}
			problems = append(problems, fmt.Sprintf("%s: failing since %s (%s, %d attempts): %v",
				c, cs.FailingSince.UTC().Format(time.RFC3339), now.Sub(cs.FailingSince).Round(time.Second), cs.Failures, cs.LastErr))
		}
		if s.Running && s.LastRead.After(s.LastSave) {
			if age := now.Sub(s.LastSave); age > maxCheckpointAge {
				problems = append(problems, fmt.Sprintf("checkpoint: events read %s ago are not checkpointed: last checkpoint %s old (limit %s)",
					now.Sub(s.LastRead).Round(time.Second), age.Round(time.Second), maxCheckpointAge))
			}
		}
		if len(problems) > 0 {
			return errors.New(strings.Join(problems, "\n"))
		}
		if d, ok := p.snk.(sink.Degrader); ok && s.Running {
			if reasons := d.Degraded(); len(reasons) > 0 {
				return DegradedError{Reasons: reasons}
			}
		}
		return nil
	}
}

// DegradedError is what the readiness check returns when the pipeline works
// but in a degraded state (the sink writes through fewer servers than it
// was given): ready, with the reasons to show (internal/web answers 200).
type DegradedError struct{ Reasons []string }

func (e DegradedError) Error() string { return "degraded: " + strings.Join(e.Reasons, "\n") }

// Degraded marks the error as a degraded, still ready, state.
func (e DegradedError) Degraded() bool { return true }
