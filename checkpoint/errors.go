package checkpoint

import (
	"errors"
	"fmt"

	"github.com/tributary-cdc/tributary/internal/fault"
)

// FencedError is the error of a Save whose lease is no longer the newest
// generation of its pipeline. It matches ErrFenced (errors.Is) and is
// permanent (fault.IsPermanent): retrying cannot make the lease valid again.
type FencedError struct {
	Pipeline string
	Held     uint64 // the generation of the refused save's lease
	Newest   uint64 // the newest generation the store has (when not Removed)
	// Removed: the store has neither Held nor a newer generation, so the
	// checkpoint was removed or replaced by an older copy (a dropped table,
	// a file restored from a backup).
	Removed bool
}

func (e *FencedError) Error() string {
	if e.Removed {
		return fmt.Sprintf("checkpoint of pipeline %q was removed or replaced by an older copy (this process holds generation %d, which the store no longer has): stopping; the next start resumes from the stored checkpoint, if any",
			e.Pipeline, e.Held)
	}
	return fmt.Sprintf("checkpoint of pipeline %q was reset or taken over by another process (generation %d; this process holds %d): stopping; the next start resumes from the stored checkpoint",
		e.Pipeline, e.Newest, e.Held)
}

// Is makes errors.Is(err, ErrFenced) true.
func (e *FencedError) Is(target error) bool { return target == ErrFenced }

// Permanent marks the error permanent for internal/fault.
func (e *FencedError) Permanent() bool { return true }

// Newest describes what a store holds for a pipeline when a Save arrives:
// the generation and the events of its newest entry.
type Newest struct {
	Exists     bool   // the store has an entry (a checkpoint or a reset) for the pipeline
	Generation uint64 // the newest entry's generation
	Events     uint64 // the newest entry's events
}

// CheckSave decides whether a Save of cp under lease may go ahead, given
// the newest entry the store holds for the pipeline; both stores call it,
// so that they judge alike. The errors it returns are permanent: a save
// without a lease, a fenced lease (FencedError), or a position that would
// move backwards within the lease's generation (cp.Events below the newest
// entry's, which is the last save or, before the first save, the
// checkpoint Acquire carried into the generation).
func CheckSave(lease Lease, cp Checkpoint, newest Newest) error {
	switch {
	case cp.Pipeline == "":
		return fault.Permanent(errors.New("save checkpoint: empty pipeline name"))
	case lease.Generation == 0 || lease.Pipeline != cp.Pipeline:
		return fault.Permanent(fmt.Errorf("save checkpoint of pipeline %q under lease %q generation %d: not a lease of this pipeline (Acquire returns one)",
			cp.Pipeline, lease.Pipeline, lease.Generation))
	case !newest.Exists || newest.Generation < lease.Generation:
		return &FencedError{Pipeline: cp.Pipeline, Held: lease.Generation, Removed: true}
	case newest.Generation > lease.Generation:
		return &FencedError{Pipeline: cp.Pipeline, Held: lease.Generation, Newest: newest.Generation}
	case cp.Events < newest.Events:
		return fault.Permanent(fmt.Errorf("checkpoint of pipeline %q would move backwards within generation %d (%d events saved, this save has %d): refused; the next start resumes from the stored checkpoint",
			cp.Pipeline, lease.Generation, newest.Events, cp.Events))
	}
	return nil
}

// ErrCorrupt is matched (errors.Is) by the error of a store whose stored
// checkpoint cannot be read: a file that does not parse, a row whose fields
// are inconsistent. Such errors are permanent and say how to repair it.
var ErrCorrupt = errors.New("stored checkpoint cannot be read")

type corruptError struct{ msg string }

func (e *corruptError) Error() string        { return e.msg }
func (e *corruptError) Is(target error) bool { return target == ErrCorrupt }
func (e *corruptError) Permanent() bool      { return true }

// Corrupt returns the permanent error of a stored checkpoint that cannot be
// read; msg says what is wrong and how to repair it. It matches ErrCorrupt.
func Corrupt(msg string) error { return &corruptError{msg} }
