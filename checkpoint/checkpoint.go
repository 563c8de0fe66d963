// Package checkpoint saves the position of each pipeline, keyed by pipeline
// name, after its rows are durable in the sink.
//
// Positions are fenced: a running pipeline holds a Lease, the newest
// generation of its pipeline's checkpoints, and only saves under the newest
// generation count. Acquiring a lease (a new process starting) or a Reset
// starts a newer generation, so that an older process's saves fail with
// ErrFenced and, even if one lands in a race, never win over a newer one.
// Within a generation a position never moves backwards.
package checkpoint

import (
	"context"
	"errors"
	"time"

	"github.com/tributary-cdc/tributary/source"
)

// Checkpoint is one saved position.
type Checkpoint struct {
	Pipeline   string          // the pipeline's name
	Position   source.Position // where the source resumes
	Events     uint64          // events written by the pipeline up to Position, in total
	SavedAt    time.Time       // when it was saved (UTC)
	Generation uint64          // the generation (lease) it was saved under
}

// Lease is a pipeline's right to save its checkpoints: the generation it
// acquired. A newer Acquire or a Reset fences it.
type Lease struct {
	Pipeline   string
	Generation uint64
}

// ErrFenced is wrapped by the error of a Save whose lease is no longer the
// newest generation: another process acquired the pipeline, or its
// checkpoint was reset. Such errors are permanent (internal/fault).
var ErrFenced = errors.New("checkpoint fenced by a newer generation")

// Store keeps the latest checkpoint of each pipeline. Methods are safe for
// concurrent use; a failure is classified with internal/fault (a store makes
// one attempt per call, the pipeline retries).
type Store interface {
	// Acquire starts a new generation of pipeline's checkpoints and returns
	// its lease with the latest checkpoint (found is false when there is
	// none, or it was reset). From then on saves under earlier generations
	// fail with ErrFenced. A corrupt store is a permanent error that says
	// how to repair it.
	Acquire(ctx context.Context, pipeline string) (lease Lease, cp Checkpoint, found bool, err error)
	// Load returns the latest checkpoint of pipeline without taking a lease
	// (for `tributary checkpoint show`); found is false when there is none.
	Load(ctx context.Context, pipeline string) (cp Checkpoint, found bool, err error)
	// Save makes cp durable under lease before it returns; a later Load
	// returns it. It fails permanently, wrapping ErrFenced, when a newer
	// generation exists, and when cp.Events is below the events of the last
	// save of the same generation (a position never moves backwards).
	// Saves under one lease come from one goroutine, in order.
	Save(ctx context.Context, lease Lease, cp Checkpoint) error
	// Reset forgets the checkpoint of pipeline, so that it starts over, and
	// fences every lease: a pipeline still running stops at its next save.
	Reset(ctx context.Context, pipeline string) error
	// Close releases the store's resources.
	Close() error
}
