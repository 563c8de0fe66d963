// Package sink defines where mapped rows go.
package sink

import (
	"context"

	"github.com/tributary-cdc/tributary/mapping"
)

// Sink writes rows idempotently: writing the same rows twice changes nothing
// visible to a query that deduplicates (FINAL).
type Sink interface {
	// Ensure creates the tables and views, or checks that existing ones match.
	// It is idempotent.
	Ensure(ctx context.Context, schema mapping.Schema) error
	// Write makes rows durable before it returns. On error nothing can be
	// assumed about which rows landed; writing them again is safe. Write is
	// safe for concurrent use: the pipeline writes several batches at once.
	// Write must not keep rows (or anything of them) after it returns: the
	// pipeline reuses them for the next batch.
	Write(ctx context.Context, rows *mapping.Rows) error
	// Close releases the connection.
	Close() error
}

// Degrader is a Sink that can say it works in a degraded state: writing
// through fewer servers than it was given (some replicas unreachable). It
// answers from what it has observed, without any I/O; nil means all is well.
type Degrader interface {
	Degraded() []string
}
