// Package checkpoint saves the position of each pipeline, keyed by pipeline
// name, after its rows are durable in the sink.
package checkpoint

import (
	"context"
	"time"

	"github.com/tributary-cdc/tributary/source"
)

// Checkpoint is one saved position.
type Checkpoint struct {
	Pipeline string          // the pipeline's name
	Position source.Position // where the source resumes
	Events   uint64          // events written by the pipeline up to Position, in total
	SavedAt  time.Time       // when it was saved (UTC)
}

// Store keeps the latest checkpoint of each pipeline.
type Store interface {
	// Load returns the latest checkpoint of pipeline; found is false when there is none.
	Load(ctx context.Context, pipeline string) (cp Checkpoint, found bool, err error)
	// Save makes cp durable before it returns; a later Load returns it.
	// Saves of one pipeline come from one goroutine, in order.
	Save(ctx context.Context, cp Checkpoint) error
	// Reset forgets the checkpoint of pipeline, so that it starts over.
	Reset(ctx context.Context, pipeline string) error
	// Close releases the store's resources.
	Close() error
}
