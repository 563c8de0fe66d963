package eventapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/source"
)

// ErrSuiteOnly is wrapped by the (permanent) error of a read the classic
// flavor does not have.
var ErrSuiteOnly = errors.New("the classic event stream has no such endpoint: suite flavor only")

// Event returns one event exactly as the API answers it (suite: GET
// /event/{tenant}/events/{locator}), for the people who debug the stream.
// It makes one attempt, with the client's authentication and error
// classification (internal/fault); the caller retries if it wants to. The
// token never appears in an error.
func (c *Client) Event(ctx context.Context, locator string) (json.RawMessage, error) {
	return c.lookupEvents(ctx, "/events/"+url.PathEscape(locator))
}

// RequestEvents returns every event one API request caused, exactly as the
// API answers (suite: GET /event/{tenant}/events/request/{requestId}, a
// plain array); one attempt, like Event.
func (c *Client) RequestEvents(ctx context.Context, requestID string) (json.RawMessage, error) {
	return c.lookupEvents(ctx, "/events/request/"+url.PathEscape(requestID))
}

func (c *Client) lookupEvents(ctx context.Context, rest string) (json.RawMessage, error) {
	if c.cfg.Flavor != source.FlavorSuite {
		return nil, fault.Permanent(ErrSuiteOnly)
	}
	var out json.RawMessage
	err := c.doer.getJSON(ctx, "/event/"+url.PathEscape(c.cfg.Tenant)+rest, url.Values{}, func(body []byte) error {
		if !json.Valid(body) {
			return fmt.Errorf("not JSON")
		}
		out = append(json.RawMessage(nil), body...)
		return nil
	})
	return out, err
}
