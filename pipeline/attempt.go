package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/tributary-cdc/tributary/internal/backoff"
	"github.com/tributary-cdc/tributary/internal/fault"
)

// firstBackoff is the pause after the first failure of a call; it doubles up
// to Config.RetryMax, with jitter.
const firstBackoff = 100 * time.Millisecond

// do calls op until it succeeds, fails permanently, refuses its input
// (poison), or ctx ends: the one retry loop of the process. Every attempt is
// counted and recorded in component's health; a transient failure is logged
// and retried after a backoff of at least its fault.RetryAfter. It returns
// nil, the permanent or poison error, or, when ctx ended first, an error
// wrapping ctx's and the last failure.
func (p *Pipeline) do(ctx context.Context, component string, op func(context.Context) error) error {
	return p.retry(ctx, component, true, op)
}

// retry is do; watch says whether a call that does not return shows in
// readiness (not for a source's Read, which waits for events by contract).
func (p *Pipeline) retry(ctx context.Context, component string, watch bool, op func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		var id uint64
		if watch {
			id = p.health.begin(component)
		}
		err := op(ctx)
		if watch {
			p.health.end(component, id)
		}
		switch {
		case err == nil:
			p.health.ok(component)
			p.obs.Attempt(component, OutcomeOK)
			return nil
		case ctx.Err() != nil:
			// Cancelled (shutting down): not a failure of the component.
			return fmt.Errorf("%w (while: %v)", ctx.Err(), err)
		case fault.IsPermanent(err):
			p.health.fail(component, err)
			p.obs.Attempt(component, OutcomePermanent)
			p.obs.Failure(component)
			return err
		case fault.IsPoison(err):
			// The component works; its input does not. Not a health failure.
			p.health.ok(component)
			p.obs.Attempt(component, OutcomePoison)
			return err
		}
		p.health.fail(component, err)
		p.obs.Attempt(component, OutcomeTransient)
		wait := max(backoff.Delay(attempt, firstBackoff, p.cfg.RetryMax), fault.RetryAfter(err))
		p.log.Warn("retrying", "component", component, "attempt", attempt+1, "wait", wait, "reason", err.Error())
		if serr := backoff.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (while: %v)", serr, err)
		}
	}
}
