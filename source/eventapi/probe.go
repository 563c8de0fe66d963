package eventapi

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tributary-cdc/tributary/source"
)

var _ source.Prober = (*Client)(nil)

// Probe makes one authenticated request, the first page of the configured
// filters with one event, and discards its answer: the pipeline calls it
// before preparing ClickHouse, so that a wrong URL, tenant or token is
// reported before any table is created. Its failure is classified like a
// page's (a 401 with a literal token is permanent, an unreachable server
// transient); the pipeline retries. It is safe to call before Open.
func (c *Client) Probe(ctx context.Context) error {
	q := c.query("")
	q.Set("pageSize", "1")
	err := c.doer.getJSON(ctx, c.path, q, func(body []byte) error {
		if !json.Valid(body) {
			return fmt.Errorf("not JSON")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("try the event stream (one authenticated request before anything else): %w", err)
	}
	return nil
}
