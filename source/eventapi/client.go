package eventapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/source"
)

// ErrEndReached is returned by Read once Config.End is set, in the past, and
// every event up to it has been delivered. It wraps io.EOF.
var ErrEndReached = fmt.Errorf("event stream: reached --api.end and caught up: %w", io.EOF)

// caughtUpPage marks (in page.skip) the empty page the fetcher sends once it
// has caught up: Read returns it as an empty batch even when the token did
// not change.
const caughtUpPage = -1

// skipPrefix starts a Position in the middle of a page: "skip=N;TOKEN" means
// "fetch with TOKEN (empty: the configured filters) and drop the first N
// events", used when Read's max splits a page.
const skipPrefix = "skip="

// Client reads the event stream of one tenant. It is a source.Source: its
// Position is the API's paging token, or a token and an offset into the page
// it fetches when a batch ends mid-page.
type Client struct {
	cfg   Config
	doer  *httpDoer
	path  string
	types map[string]bool // client-side type filter; nil: every type

	mu     sync.Mutex // guards opened, closed, done
	opened bool
	closed bool
	fctx   context.Context // the fetcher's context, cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed when the running fetcher has stopped
	pages  chan page     // the fetcher's pages, then its failure, if any

	// Read's state; Read is called from one goroutine.
	cur    *page
	off    int
	seen   seenSets
	last   source.Position
	err    error // a permanent error or the end: returned by every later Read
	resume *page // after a failure: the request to fetch again (reqToken, skip)

	win  *windowed                             // the parallel backfill's state; nil: one sequential stream
	warm func(context.Context, []source.Event) // an Enricher's Warm, or nil; guarded by mu

	duplicates atomic.Uint64
}

var _ source.Source = (*Client)(nil)

// New validates cfg and returns a Client; it makes no connection.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("event-stream configuration: %w", err)
	}
	cfg = cfg.withDefaults()
	d, err := newDoer(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, doer: d}
	switch {
	case cfg.Flavor == source.FlavorSuite:
		c.path = "/event/" + url.PathEscape(cfg.Tenant) + "/events/list"
	case cfg.Attributed:
		c.path = "/eventstream/attributedEvents"
	default:
		c.path = "/eventstream/events"
	}
	if len(cfg.Types) > 1 {
		c.types = map[string]bool{}
		for _, t := range cfg.Types {
			c.types[strings.TrimSpace(t)] = true
		}
	}
	return c, nil
}

// Duplicates returns how many events Read dropped because their locator
// repeated one of the current or the previous page.
func (c *Client) Duplicates() uint64 { return c.duplicates.Load() }

// Open starts fetching pages after from, in the background, up to
// Config.Prefetch pages ahead of Read. An empty from starts at the configured
// filters (Start, End, Types). Open makes no request itself: a failing first
// request surfaces from Read. A position this client cannot have written is a
// permanent error.
func (c *Client) Open(ctx context.Context, from source.Position) error {
	windows := c.wantWindows(from, time.Now())
	var (
		tok  string
		skip int
		err  error
	)
	if !windows {
		if tok, skip, err = parsePosition(from); err != nil {
			return err
		}
	} else if _, _, err := parseWindows(from); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opened {
		return errors.New("event stream: Open called twice")
	}
	c.opened = true
	c.fctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	c.pages = make(chan page, c.cfg.Prefetch-1)
	c.last = from
	attrs := []any{"flavor", c.cfg.Flavor, "path", c.path, "resume", from != ""}
	if !c.cfg.End.IsZero() {
		attrs = append(attrs, "end", c.cfg.End.UTC().Format(time.RFC3339Nano),
			"ends", "once caught up with the stream and the wall clock is past --api.end")
	}
	if windows {
		attrs = append(attrs, "backfill_readers", c.cfg.BackfillConcurrency)
	}
	c.cfg.Logger.Info("event stream opened", attrs...)
	if windows {
		return c.openWindows(from)
	}
	c.startFetcher(tok, skip)
	return nil
}

// startFetcher starts the background fetcher at the page after tok, of
// which skip events were delivered already. c.mu must be held.
func (c *Client) startFetcher(tok string, skip int) {
	c.done = make(chan struct{})
	go c.prefetch(c.fctx, tok, skip, c.done)
}

// restart starts the fetcher again at the request that failed, once the
// one that failed has stopped.
func (c *Client) restart(from *page) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fault.Permanent(errors.New("event stream: Read after Close"))
	}
	<-c.done // it stops right after handing over its failure
	c.startFetcher(from.reqToken, from.skip)
	return nil
}

// Read returns the next events, at most max, with the Position after them. It
// blocks until there is at least one event, or a page whose events were all
// filtered out or duplicates (an empty Batch with a new Position, worth
// saving), or ctx is done. When the stream is caught up (an empty page) Read
// returns one empty Batch at the latest token, so that the pipeline knows
// the backlog is read; then it keeps polling every PollInterval without
// returning until events arrive.
//
// When a request of the fetcher fails, Read first returns every page fetched
// before it, then the failure (classified with internal/fault); the next Read
// fetches again from that request, so no page is skipped. A permanent error
// or ErrEndReached is returned by this and every later call. Events that
// cannot be read come with Reject set, in their place.
func (c *Client) Read(ctx context.Context, max int) (source.Batch, error) {
	if max <= 0 {
		max = int(^uint(0) >> 1)
	}
	if c.win != nil {
		return c.readWindows(ctx, max)
	}
	if c.pages == nil {
		return source.Batch{}, errors.New("event stream: Read before Open")
	}
	for {
		if c.err != nil {
			return source.Batch{}, c.err
		}
		if c.cur == nil {
			if c.resume != nil {
				if err := c.restart(c.resume); err != nil {
					return source.Batch{}, err
				}
				c.resume = nil
			}
			select {
			case <-ctx.Done():
				return source.Batch{}, ctx.Err()
			case p := <-c.pages:
				if p.err != nil {
					if errors.Is(p.err, ErrEndReached) || fault.IsPermanent(p.err) {
						c.err = p.err
					} else {
						c.resume = &page{reqToken: p.reqToken, skip: p.skip}
					}
					return source.Batch{}, p.err
				}
				if len(p.events) == 0 {
					// Caught up: no event, and the seen sets stay as they
					// are (the next page may repeat the last one's tail).
					if p.next != string(c.last) || p.skip == caughtUpPage {
						c.last = source.Position(p.next)
						return source.Batch{Position: c.last}, nil
					}
					continue
				}
				c.cur, c.off = &p, p.skip
				c.seen.newPage(p.events, p.skip)
			}
		}
		p := c.cur
		// The events delivered are compacted in place over the page's own
		// array (each is written at or before where it was read): no copy.
		evs := p.events[c.off:c.off]
		for c.off < len(p.events) && len(evs) < max {
			ev := p.events[c.off]
			c.off++
			if c.seen.dup(&ev) {
				c.duplicates.Add(1)
				continue
			}
			if c.types != nil && !c.types[ev.Type] && ev.Reject == "" {
				continue // a rejected event is never filtered: its type may be wrong
			}
			evs = append(evs, ev)
		}
		var pos source.Position
		if c.off >= len(p.events) {
			pos = source.Position(p.next)
			c.cur = nil
		} else {
			pos = source.Position(skipPrefix + strconv.Itoa(c.off) + ";" + p.reqToken)
		}
		if len(evs) > 0 || pos != c.last {
			c.last = pos
			if len(evs) == 0 {
				evs = nil
			}
			// Capped, so that appending to the batch cannot overwrite the
			// page's events still to be read.
			return source.Batch{Events: evs[:len(evs):len(evs)], Position: pos}, nil
		}
	}
}

// seenKey is what identifies ev among the current and previous pages' events:
// its locator, or for a rejected event (whose locator may be missing) its raw
// bytes, with a prefix no locator has.
func seenKey(ev *source.Event) string {
	if ev.Reject != "" {
		return "\x00" + string(ev.Data)
	}
	return ev.Locator
}

// Ack does nothing and returns nil: the API keeps no state for its readers
// (a paging token lasts forever), so there is nothing to release or confirm.
// It is idempotent and safe to call concurrently.
func (c *Client) Ack(ctx context.Context, upTo source.Position) error { return nil }

// Close stops the background fetching and releases idle connections. It
// waits for the fetcher to stop, or for ctx. Read returns a permanent error
// after it.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed || !c.opened {
		c.closed = true
		c.mu.Unlock()
		c.doer.close()
		return nil
	}
	c.closed = true
	c.cancel()
	done := c.done
	c.mu.Unlock()
	defer c.doer.close()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close event stream: %w", ctx.Err())
	}
}

// prefetch fetches pages until ctx is done or a request fails, sending the
// non-empty ones to c.pages, then the failure with the token and skip of the
// request that failed, and stops. An empty page means caught up: the first
// after events is sent on (as the caught-up page), then it waits
// PollInterval and calls again with the token it got. It closes done when
// it returns.
func (c *Client) prefetch(ctx context.Context, tok string, skip int, done chan<- struct{}) {
	defer close(done)
	announced := false // the caught-up page was sent since the last page of events
	for {
		evs, next, err := c.fetchPage(ctx, tok)
		if err != nil {
			if ctx.Err() == nil {
				select {
				case c.pages <- page{reqToken: tok, skip: skip, err: fmt.Errorf("fetch event page: %w", err)}:
				case <-ctx.Done():
				}
			}
			return
		}
		if len(evs) == 0 {
			if !c.cfg.End.IsZero() && time.Now().After(c.cfg.End) {
				select {
				case c.pages <- page{err: ErrEndReached}:
				case <-ctx.Done():
				}
				return
			}
			if !announced {
				// Once per catching up, Read returns an empty batch, so
				// that the pipeline knows the backlog is read.
				announced = true
				select {
				case c.pages <- page{reqToken: tok, next: next, skip: caughtUpPage}:
				case <-ctx.Done():
					return
				}
			}
			tok = next
			skip = 0
			t := time.NewTimer(c.cfg.PollInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		select {
		case c.pages <- page{reqToken: tok, events: evs, next: next, skip: skip}:
		case <-ctx.Done():
			return
		}
		tok, skip, announced = next, 0, false
	}
}

// fetchPage fetches the page after tok ("": the first page of the configured
// filters), in one attempt.
func (c *Client) fetchPage(ctx context.Context, tok string) ([]source.Event, string, error) {
	evs, next, err := c.fetchQuery(ctx, c.query(tok))
	if err != nil {
		return nil, "", err
	}
	c.warmPage(ctx, evs)
	return evs, next, nil
}

// query returns the query of the call after tok: the token alone, or, for
// the first call, the configured filters.
func (c *Client) query(tok string) url.Values {
	q := url.Values{}
	if tok != "" {
		q.Set("pagingToken", tok)
		return q
	}
	classic := c.cfg.Flavor == source.FlavorClassic
	ts := func(t time.Time) string {
		if classic {
			return strconv.FormatInt(t.UnixMilli(), 10)
		}
		return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	if !c.cfg.Start.IsZero() {
		q.Set("startTimestamp", ts(c.cfg.Start))
	}
	if !c.cfg.End.IsZero() {
		q.Set("endTimestamp", ts(c.cfg.End))
	}
	if len(c.cfg.Types) == 1 {
		if classic {
			q.Set("eventType", strings.TrimSpace(c.cfg.Types[0]))
		} else {
			q.Set("type", strings.TrimSpace(c.cfg.Types[0]))
		}
	}
	q.Set("pageSize", strconv.Itoa(c.cfg.PageSize))
	return q
}

// parsePosition splits a Position into the token to fetch with and the
// number of events of that page already delivered. A position this client
// cannot have written is a permanent error saying how to repair it.
func parsePosition(p source.Position) (tok string, skip int, err error) {
	s := string(p)
	if !strings.HasPrefix(s, skipPrefix) {
		return s, 0, nil
	}
	n, tok, ok := strings.Cut(s[len(skipPrefix):], ";")
	skip, err = strconv.Atoi(n)
	if !ok || err != nil || skip < 0 {
		return "", 0, fault.Permanent(fmt.Errorf("event stream: invalid saved position %q: want a paging token, or skip=N;TOKEN with N a count of events; "+
			"repair the checkpoint (`tributary checkpoint reset --pipeline NAME` starts again from --api.start)", s))
	}
	return tok, skip, nil
}
