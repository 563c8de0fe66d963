// Package storetest holds the scenarios every checkpoint.Store must pass,
// so that the ClickHouse table and the file are judged alike: leases fence
// each other, a reset fences a running lease, positions never move
// backwards within a generation, and a save needs a lease.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/source"
)

// Outcomes of a step.
const (
	OK        = ""
	Fenced    = "fenced"    // a permanent error matching checkpoint.ErrFenced
	Permanent = "permanent" // a permanent error that is not ErrFenced
)

// Step is one call of a scenario. Process picks the Store value (two values
// on the same storage stand for two processes); Acquire results are
// numbered in order, and Lease names the one a Save uses (-1: none).
type Step struct {
	Process int
	Op      string // "acquire", "save", "reset" or "load"
	Lease   int    // save: index of the acquired lease, -1 for a zero Lease
	Pos     string // save: the position; acquire, load: the wanted position ("" with Found false)
	Events  uint64 // save: the events; acquire, load: the wanted events
	Found   bool   // acquire, load: a checkpoint is wanted
	Want    string // OK, Fenced or Permanent
	WantMsg string // a part of the error's message, if any
}

// Scenario is a named list of steps on one pipeline.
type Scenario struct {
	Name  string
	Steps []Step
}

// Scenarios are the cases Run plays.
var Scenarios = []Scenario{
	{"resume after a restart", []Step{
		{Process: 0, Op: "acquire"},
		{Process: 0, Op: "save", Lease: 0, Pos: "a", Events: 10},
		{Process: 0, Op: "save", Lease: 0, Pos: "b", Events: 25},
		{Process: 1, Op: "acquire", Pos: "b", Events: 25, Found: true},
		{Process: 0, Op: "load", Pos: "b", Events: 25, Found: true},
		{Process: 1, Op: "save", Lease: 1, Pos: "c", Events: 30},
		{Process: 0, Op: "load", Pos: "c", Events: 30, Found: true},
	}},
	{"a second acquire fences the first lease", []Step{
		{Process: 0, Op: "acquire"},
		{Process: 0, Op: "save", Lease: 0, Pos: "a", Events: 10},
		{Process: 1, Op: "acquire", Pos: "a", Events: 10, Found: true},
		{Process: 0, Op: "save", Lease: 0, Pos: "b", Events: 20, Want: Fenced, WantMsg: "was reset or taken over by another process"},
		{Process: 1, Op: "load", Pos: "a", Events: 10, Found: true},
		{Process: 1, Op: "save", Lease: 1, Pos: "c", Events: 30},
		{Process: 0, Op: "save", Lease: 0, Pos: "d", Events: 40, Want: Fenced},
		{Process: 0, Op: "load", Pos: "c", Events: 30, Found: true},
	}},
	{"a reset fences a running lease", []Step{
		{Process: 0, Op: "acquire"},
		{Process: 0, Op: "save", Lease: 0, Pos: "a", Events: 10},
		{Process: 1, Op: "reset"},
		{Process: 0, Op: "load"},
		{Process: 0, Op: "save", Lease: 0, Pos: "b", Events: 20, Want: Fenced},
		{Process: 1, Op: "load"},
		{Process: 0, Op: "acquire"}, // the restart starts over
		{Process: 0, Op: "save", Lease: 1, Pos: "z", Events: 1},
		{Process: 1, Op: "load", Pos: "z", Events: 1, Found: true},
	}},
	{"a reset between a start and its first save", []Step{
		{Process: 0, Op: "acquire"},
		{Process: 1, Op: "reset"},
		{Process: 0, Op: "save", Lease: 0, Pos: "a", Events: 1, Want: Fenced},
		{Process: 1, Op: "load"},
	}},
	{"positions never move backwards within a generation", []Step{
		{Process: 0, Op: "acquire"},
		{Process: 0, Op: "save", Lease: 0, Pos: "a", Events: 10},
		{Process: 0, Op: "save", Lease: 0, Pos: "a", Events: 10}, // the same again: a retried save
		{Process: 0, Op: "save", Lease: 0, Pos: "x", Events: 9, Want: Permanent, WantMsg: "would move backwards"},
		{Process: 1, Op: "load", Pos: "a", Events: 10, Found: true},
		{Process: 1, Op: "acquire", Pos: "a", Events: 10, Found: true},
		{Process: 1, Op: "save", Lease: 1, Pos: "y", Events: 5, Want: Permanent, WantMsg: "would move backwards"}, // below what Acquire carried in
		{Process: 1, Op: "save", Lease: 1, Pos: "b", Events: 11},
		{Process: 0, Op: "load", Pos: "b", Events: 11, Found: true},
	}},
	{"a save needs a lease", []Step{
		{Process: 0, Op: "save", Lease: -1, Pos: "a", Events: 1, Want: Permanent, WantMsg: "not a lease of this pipeline"},
		{Process: 0, Op: "load"},
	}},
	{"a reset of an unknown pipeline does nothing", []Step{
		{Process: 0, Op: "reset"},
		{Process: 1, Op: "load"},
		{Process: 1, Op: "acquire"},
	}},
}

// Run plays every scenario on stores from open, which returns a new Store
// value on the same storage each time it is called; each scenario uses its
// own pipeline name.
func Run(t *testing.T, ctx context.Context, open func(t *testing.T) checkpoint.Store) {
	for i, sc := range Scenarios {
		t.Run(strings.ReplaceAll(sc.Name, " ", "_"), func(t *testing.T) {
			play(t, ctx, fmt.Sprintf("p%d", i), sc, open)
		})
	}
}

func play(t *testing.T, ctx context.Context, pipeline string, sc Scenario, open func(t *testing.T) checkpoint.Store) {
	procs := []checkpoint.Store{open(t), open(t)}
	for _, s := range procs {
		defer s.Close()
	}
	var leases []checkpoint.Lease
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for i, st := range sc.Steps {
		s := procs[st.Process]
		where := fmt.Sprintf("step %d (process %d %s)", i, st.Process, st.Op)
		var err error
		switch st.Op {
		case "acquire":
			var lease checkpoint.Lease
			var cp checkpoint.Checkpoint
			var found bool
			lease, cp, found, err = s.Acquire(ctx, pipeline)
			if err != nil {
				break
			}
			if lease.Pipeline != pipeline || (len(leases) > 0 && lease.Generation <= leases[len(leases)-1].Generation) {
				t.Errorf("%s: lease %+v, want pipeline %s and a generation above the last lease's %+v", where, lease, pipeline, leases)
			}
			leases = append(leases, lease)
			checkFound(t, where, cp, found, st)
			if found && cp.Generation != lease.Generation {
				t.Errorf("%s: checkpoint generation %d, want the new lease's %d", where, cp.Generation, lease.Generation)
			}
		case "save":
			lease := checkpoint.Lease{}
			if st.Lease >= 0 {
				lease = leases[st.Lease]
			}
			at = at.Add(time.Second)
			err = s.Save(ctx, lease, checkpoint.Checkpoint{Pipeline: pipeline, Position: source.Position(st.Pos), Events: st.Events, SavedAt: at})
		case "reset":
			err = s.Reset(ctx, pipeline)
		case "load":
			var cp checkpoint.Checkpoint
			var found bool
			cp, found, err = s.Load(ctx, pipeline)
			if err == nil {
				checkFound(t, where, cp, found, st)
				if found && len(leases) > 0 && cp.Generation != leases[len(leases)-1].Generation {
					// The checkpoint found is the newest lease's (saved or
					// carried in), unless a later reset removed it.
					t.Errorf("%s: checkpoint generation %d, want the newest lease's %d", where, cp.Generation, leases[len(leases)-1].Generation)
				}
			}
		default:
			t.Fatalf("%s: unknown op", where)
		}
		checkErr(t, where, err, st)
	}
}

func checkFound(t *testing.T, where string, cp checkpoint.Checkpoint, found bool, st Step) {
	t.Helper()
	if found != st.Found || (found && (string(cp.Position) != st.Pos || cp.Events != st.Events)) {
		t.Errorf("%s: got %+v, found %v; want position %q, %d events, found %v", where, cp, found, st.Pos, st.Events, st.Found)
	}
}

func checkErr(t *testing.T, where string, err error, st Step) {
	t.Helper()
	switch st.Want {
	case OK:
		if err != nil {
			t.Errorf("%s: %v, want success", where, err)
		}
		return
	case Fenced:
		if !errors.Is(err, checkpoint.ErrFenced) || !fault.IsPermanent(err) {
			t.Errorf("%s: error %v (fenced %v, permanent %v), want a permanent ErrFenced", where, err, errors.Is(err, checkpoint.ErrFenced), fault.IsPermanent(err))
		}
	case Permanent:
		if err == nil || errors.Is(err, checkpoint.ErrFenced) || !fault.IsPermanent(err) {
			t.Errorf("%s: error %v, want a permanent error that is not ErrFenced", where, err)
		}
	}
	if err != nil && !strings.Contains(err.Error(), st.WantMsg) {
		t.Errorf("%s: error %q lacks %q", where, err, st.WantMsg)
	}
}
