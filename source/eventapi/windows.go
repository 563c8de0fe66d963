package eventapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/source"
)

// The parallel backfill. When the start is far behind now, the range
// [Start, now − BackfillMargin) is cut into time windows read at once by
// BackfillConcurrency readers, each window first called with its
// startTimestamp and endTimestamp (and the type filter), then with its token
// alone; the last window, [now − margin, End or open), is the tail: read
// like the sequential stream, it goes on live once caught up. The windows
// are planned from the stream's density: a first page of each of
// 4 × BackfillConcurrency equal slices of the range says how many events the
// slice holds (exactly, when the page is not full, else estimated from the
// time the full page spans); slices are merged into windows of about the
// same number of events, and a dense slice is split.
//
// The Position of a windowed client holds every unfinished window (its
// range, the token after its last delivered page and how many events of the
// next page were delivered) and the merged low watermark; windows read to
// their end are left out. Once only the tail remains, the Position is the
// tail's token alone, as a sequential client's.

// windowsPrefix starts a Position that holds backfill windows.
const windowsPrefix = "windows="

// windowsPos is the saved state of a windowed backfill (after windowsPrefix, as JSON).
type windowsPos struct {
	Total int      `json:"n"`  // windows planned
	Low   int64    `json:"lw"` // merged low watermark (ms): every event before it is delivered
	W     []winPos `json:"w"`  // the unfinished windows, in time order
}

// winPos is one unfinished window.
type winPos struct {
	ID    int    `json:"id"`
	Start int64  `json:"s"`           // first timestamp (ms, inclusive)
	End   int64  `json:"e,omitempty"` // end (ms, exclusive); 0: none (the tail without --api.end)
	Tail  bool   `json:"tail,omitempty"`
	Tok   string `json:"t,omitempty"` // the token after the last delivered page; "": not started
	Skip  int    `json:"k,omitempty"` // events of the page after Tok already delivered
	At    int64  `json:"a,omitempty"` // timestamp (ms) of its last delivered event
}

// low is where the window stands: every event of it before low is delivered.
func (w winPos) low() int64 { return max(w.Start, w.At) }

// WindowStats is a snapshot of a backfill's windows.
type WindowStats struct {
	Total, Done int       // windows planned and read to their end (0, 0: no backfill)
	Low         time.Time // the low watermark: the time position of the slowest window
	Covered     float64   // share of the backfill delivered, 0..1 (windows done, and how far the others are)
}

// windowed is the state of a windowed client.
type windowed struct {
	ch     chan winPage  // pages of every window, in each window's order
	retry  chan struct{} // after a failed planning: plan again
	resume chan winPos   // a window to read again from its delivered state
	events atomic.Uint64 // events delivered, for the progress line

	// Read's state; Read is called from one goroutine.
	planned      bool
	total        int
	order        []int            // ids of the unfinished windows, in time order
	st           map[int]*winRead // the unfinished windows
	cur          *winPage
	off          int
	resumes      []int // windows to read again from their delivered state, at the next Read
	replan       bool
	pending      []winPage // transient failures of windows not returned yet
	pendingSince time.Time

	// For Windows(), from other goroutines.
	mu    sync.Mutex
	stats WindowStats
}

// winRead is Read's state of one unfinished window.
type winRead struct {
	winPos
	seen seenSets
}

// winPage is a page of one window, the end of a closed window, the tail's
// caught-up page, the plan, or a failure.
type winPage struct {
	page
	win      int
	done     bool     // a closed window was read to its end
	caughtUp bool     // the tail is caught up (next is its token)
	plan     []winPos // the planner's windows
}

// parseWindows decodes a Position that holds windows; ok is false when p is
// not one.
func parseWindows(p source.Position) (windowsPos, bool, error) {
	s, ok := strings.CutPrefix(string(p), windowsPrefix)
	if !ok {
		return windowsPos{}, false, nil
	}
	var w windowsPos
	if err := json.Unmarshal([]byte(s), &w); err != nil {
		return windowsPos{}, true, fault.Permanent(fmt.Errorf("event stream: invalid saved backfill windows: %v; "+
			"repair the checkpoint (`tributary checkpoint reset --pipeline NAME` starts again from --api.start)", err))
	}
	return w, true, nil
}

// DescribeWindows returns one line per unfinished backfill window of a
// saved Position (none when it holds no windows), and a first line with the
// windows done and the low watermark.
func DescribeWindows(p source.Position) []string {
	w, ok, err := parseWindows(p)
	if !ok {
		return nil
	}
	if err != nil {
		return []string{err.Error()}
	}
	ms := func(v int64) string { return time.UnixMilli(v).UTC().Format(time.RFC3339Nano) }
	out := []string{fmt.Sprintf("%d of %d done; every event before %s is written (the low watermark)", w.Total-len(w.W), w.Total, ms(w.Low))}
	for _, x := range w.W {
		end := "open (the live tail)"
		if x.End != 0 {
			end = ms(x.End)
		}
		kind := "window"
		if x.Tail {
			kind = "tail"
		}
		state := "not started"
		if x.Tok != "" || x.Skip > 0 {
			state = "read up to " + ms(x.low())
		}
		out = append(out, fmt.Sprintf("%s %d: %s → %s, %s", kind, x.ID, ms(x.Start), end, state))
	}
	return out
}

// Windows returns a snapshot of the backfill's windows (zero when the
// client reads one sequential stream).
func (c *Client) Windows() WindowStats {
	c.mu.Lock()
	w := c.win
	c.mu.Unlock()
	if w == nil {
		return WindowStats{}
	}
	return w.snapshot()
}

// wantWindows says whether a client opened at from reads windows: it has
// several readers, starts from the configured start (or saved windows), and
// the start is more than the margin behind now.
func (c *Client) wantWindows(from source.Position, now time.Time) bool {
	if strings.HasPrefix(string(from), windowsPrefix) {
		return true
	}
	return from == "" && c.cfg.BackfillConcurrency > 1 && !c.cfg.Start.IsZero() &&
		c.cfg.Start.Before(now.Add(-c.cfg.BackfillMargin)) &&
		(c.cfg.End.IsZero() || c.cfg.End.After(c.cfg.Start))
}

// openWindows starts the windowed reading at from (saved windows, or ""
// to plan). c.mu must be held.
func (c *Client) openWindows(from source.Position) error {
	w := &windowed{
		ch:     make(chan winPage, c.cfg.BackfillConcurrency*c.cfg.Prefetch),
		retry:  make(chan struct{}, 1),
		resume: make(chan winPos),
		st:     map[int]*winRead{},
	}
	var plan []winPos
	if from != "" {
		saved, _, err := parseWindows(from)
		if err != nil {
			return err
		}
		plan = saved.W
		w.total = saved.Total
		w.setPlan(plan, saved.Total)
		w.planned = true
	}
	c.win = w
	c.done = make(chan struct{})
	go c.runWindows(c.fctx, plan, c.done)
	return nil
}

// setPlan makes plan Read's windows.
func (w *windowed) setPlan(plan []winPos, total int) {
	w.total = total
	for _, p := range plan {
		w.st[p.ID] = &winRead{winPos: p}
		w.order = append(w.order, p.ID)
	}
	w.updateStats()
}

// runWindows plans the windows if plan is nil, then reads them with
// BackfillConcurrency readers until ctx ends. It closes done when every
// reader stopped.
func (c *Client) runWindows(ctx context.Context, plan []winPos, done chan<- struct{}) {
	defer close(done)
	w := c.win
	for plan == nil {
		p, err := c.plan(ctx, time.Now())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !w.send(ctx, winPage{page: page{err: fmt.Errorf("plan backfill windows: %w", err)}, win: -1}) {
				return
			}
			select { // Read asks again at its next call
			case <-ctx.Done():
				return
			case <-w.retry:
			}
			continue
		}
		plan = p
		c.cfg.Logger.Info("backfill windows planned", "windows", len(plan), "readers", c.cfg.BackfillConcurrency,
			"from", time.UnixMilli(plan[0].Start).UTC().Format(time.RFC3339), "margin", c.cfg.BackfillMargin.String())
		if !w.send(ctx, winPage{win: -1, plan: plan}) {
			return
		}
	}
	queue := make(chan int, len(plan)) // a window is in it at most once
	specs := map[int]winPos{}
	for _, p := range plan {
		specs[p.ID] = p
		queue <- p.ID
	}
	go c.progress(ctx)
	var mu sync.Mutex // guards specs: Read's resumes update them
	var wg sync.WaitGroup
	for range c.cfg.BackfillConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case id := <-queue:
					mu.Lock()
					spec := specs[id]
					mu.Unlock()
					c.readWindow(ctx, spec)
				}
			}
		}()
	}
	// Resumes: Read sends the window's delivered state on w.resume.
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case r := <-w.resume:
			mu.Lock()
			specs[r.ID] = r
			mu.Unlock()
			queue <- r.ID
		}
	}
}

func (w *windowed) send(ctx context.Context, p winPage) bool {
	select {
	case w.ch <- p:
		return true
	case <-ctx.Done():
		return false
	}
}

// windowQuery returns the query of a window's first call.
func (c *Client) windowQuery(spec winPos) url.Values {
	q := c.query("")
	classic := c.cfg.Flavor == source.FlavorClassic
	ts := func(ms int64) string {
		if classic {
			return strconv.FormatInt(ms, 10)
		}
		return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	q.Set("startTimestamp", ts(spec.Start))
	q.Del("endTimestamp")
	if spec.End != 0 {
		q.Set("endTimestamp", ts(spec.End))
	}
	return q
}

// readWindow reads one window from spec's token (and skip) until a closed
// window's end, a failure or ctx's end, sending its pages on c.win.ch; the
// tail goes on polling once caught up, like prefetch.
func (c *Client) readWindow(ctx context.Context, spec winPos) {
	w := c.win
	tok, skip := spec.Tok, spec.Skip
	announced := false
	for {
		var q url.Values
		if tok == "" {
			q = c.windowQuery(spec)
		} else {
			q = url.Values{"pagingToken": {tok}}
		}
		evs, next, err := c.fetchQuery(ctx, q)
		if err == nil {
			c.warmPage(ctx, evs)
		}
		if err != nil {
			if ctx.Err() == nil {
				w.send(ctx, winPage{page: page{reqToken: tok, skip: skip, err: fmt.Errorf("fetch event page of window %d: %w", spec.ID, err)}, win: spec.ID})
			}
			return
		}
		evs = inWindow(evs, spec)
		if len(evs) == 0 {
			if !spec.Tail {
				w.send(ctx, winPage{page: page{reqToken: tok, next: next}, win: spec.ID, done: true})
				return
			}
			if !c.cfg.End.IsZero() && time.Now().After(c.cfg.End) {
				w.send(ctx, winPage{page: page{err: ErrEndReached}, win: spec.ID})
				return
			}
			if !announced {
				announced = true
				if !w.send(ctx, winPage{page: page{reqToken: tok, next: next}, win: spec.ID, caughtUp: true}) {
					return
				}
			}
			tok, skip = next, 0
			t := time.NewTimer(c.cfg.PollInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if !w.send(ctx, winPage{page: page{reqToken: tok, events: evs, next: next, skip: skip}, win: spec.ID}) {
			return
		}
		tok, skip, announced = next, 0, false
	}
}

// inWindow drops the events of a page outside spec's range, which a server
// that repeats events, or whose endTimestamp is inclusive, may return; an
// event without a time (a reject) is kept.
func inWindow(evs []source.Event, spec winPos) []source.Event {
	out := evs[:0] // in place: each kept event is written at or before where it was read
	for i := range evs {
		ms := evs[i].Timestamp.UnixMilli()
		if !evs[i].Timestamp.IsZero() && (ms < spec.Start || (spec.End != 0 && ms >= spec.End)) {
			continue
		}
		out = append(out, evs[i])
	}
	clear(evs[len(out):]) // what was dropped holds on to nothing
	return out
}

// fetchQuery fetches one page with query q, in one attempt.
func (c *Client) fetchQuery(ctx context.Context, q url.Values) ([]source.Event, string, error) {
	var (
		evs  []source.Event
		next string
	)
	err := c.doer.getJSON(ctx, c.path, q, func(body []byte) error {
		var err error
		evs, next, err = decodePage(c.cfg.Flavor, c.cfg.Tenant, body)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if c.cfg.OnPage != nil {
		c.cfg.OnPage(len(evs))
	}
	return evs, next, nil
}

// plan probes the stream's density and cuts [Start, min(End, now −
// margin)) into windows, followed by the tail.
func (c *Client) plan(ctx context.Context, now time.Time) ([]winPos, error) {
	from := c.cfg.Start.UnixMilli()
	to := now.Add(-c.cfg.BackfillMargin).UnixMilli()
	end := int64(0)
	if !c.cfg.End.IsZero() {
		end = c.cfg.End.UnixMilli()
		to = min(to, end)
	}
	slices := 4 * c.cfg.BackfillConcurrency
	span := to - from
	if span < int64(slices) {
		return []winPos{{ID: 0, Start: from, End: end, Tail: true}}, nil
	}
	counts := make([]float64, slices)
	bounds := make([]int64, slices+1)
	for i := range bounds {
		bounds[i] = from + span*int64(i)/int64(slices)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range slices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs, _, err := c.fetchQuery(pctx, c.windowQuery(winPos{Start: bounds[i], End: bounds[i+1]}))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			counts[i] = estimate(evs, bounds[i], bounds[i+1], c.cfg.PageSize)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return cutWindows(bounds, counts, c.cfg.BackfillConcurrency, c.cfg.PageSize, end), nil
}

// estimate returns how many events the slice [start, end) holds, from its
// first page evs: exactly len(evs) when the page is not full, else the
// page's density over the time it spans (its first to its last event),
// times the rest of the slice from its first event.
func estimate(evs []source.Event, start, end int64, pageSize int) float64 {
	if len(evs) < pageSize {
		return float64(len(evs))
	}
	first, last := int64(-1), int64(-1)
	for i := range evs {
		if !evs[i].Timestamp.IsZero() {
			ms := evs[i].Timestamp.UnixMilli()
			if first < 0 {
				first = ms
			}
			last = ms
		}
	}
	if first < 0 {
		first, last = start, start
	}
	spanned := max(last-first+1, 1)
	return max(float64(len(evs)), float64(len(evs))*float64(end-first)/float64(spanned))
}

// cutWindows cuts the probed slices (bounds[i], bounds[i+1]) holding about
// counts[i] events into windows of about the same number of events: about
// 4 per reader, at least 4 pages each; a slice denser than that is split
// in equal parts. The last window is the tail, from the end of the slices
// to end (0: open).
func cutWindows(bounds []int64, counts []float64, readers, pageSize int, end int64) []winPos {
	var total float64
	for _, n := range counts {
		total += n
	}
	target := max(total/float64(4*readers), float64(4*pageSize))
	var out []winPos
	add := func(s, e int64) {
		if e > s {
			out = append(out, winPos{ID: len(out), Start: s, End: e})
		}
	}
	start, acc := bounds[0], 0.0
	for i, n := range counts {
		s, e := bounds[i], bounds[i+1]
		if n > target {
			add(start, s) // what accumulated before the dense slice
			parts := int64(n/target + 0.5)
			parts = min(max(parts, 2), e-s)
			for k := range parts {
				add(s+(e-s)*k/parts, s+(e-s)*(k+1)/parts)
			}
			start, acc = e, 0
			continue
		}
		acc += n
		if acc >= target {
			add(start, e)
			start, acc = e, 0
		}
	}
	last := bounds[len(bounds)-1]
	add(start, last)
	if end != 0 && last >= end && len(out) > 0 {
		out[len(out)-1].Tail = true // the range ends at --api.end: its last window is the tail
		return out
	}
	out = append(out, winPos{ID: len(out), Start: last, End: end, Tail: true})
	return out
}

// readWindows is Read for a windowed client.
func (c *Client) readWindows(ctx context.Context, most int) (source.Batch, error) {
	w := c.win
	for {
		if c.err != nil {
			return source.Batch{}, c.err
		}
		if w.cur == nil {
			if w.replan {
				w.replan = false
				w.retry <- struct{}{}
			}
			for len(w.resumes) > 0 {
				if r, ok := w.st[w.resumes[0]]; ok {
					select {
					case w.resume <- r.winPos:
					case <-ctx.Done():
						return source.Batch{}, ctx.Err()
					case <-c.fctx.Done():
						return source.Batch{}, fault.Permanent(errors.New("event stream: Read after Close"))
					}
				}
				w.resumes = w.resumes[1:]
			}
			if w.planned && len(w.st) == 0 {
				c.err = ErrEndReached // every window, the tail too, was read to --api.end
				continue
			}
			var p winPage
			if len(w.pending) > 0 {
				// A window failed: the others' pages go on first, then
				// the failure, once none is ready (or after a second).
				if time.Since(w.pendingSince) > time.Second {
					return source.Batch{}, w.failPending()
				}
				select {
				case p = <-w.ch:
				default:
					return source.Batch{}, w.failPending()
				}
			} else {
				select {
				case <-ctx.Done():
					return source.Batch{}, ctx.Err()
				case p = <-w.ch:
				}
			}
			switch {
			case p.plan != nil:
				w.setPlan(p.plan, len(p.plan))
				w.planned = true
				continue
			case p.err != nil:
				switch {
				case p.win < 0:
					w.replan = true
				case errors.Is(p.err, ErrEndReached):
					// The tail reached --api.end: its end is in the next
					// batch's position; Read says the end is reached once
					// every window is done.
					w.finish(p.win)
					continue
				case fault.IsPermanent(p.err):
					c.err = p.err
				default:
					if len(w.pending) == 0 {
						w.pendingSince = time.Now()
					}
					w.pending = append(w.pending, p)
					continue
				}
				return source.Batch{}, p.err
			case p.done:
				w.finish(p.win)
				if len(w.st) == 0 || (len(w.st) == 1 && w.st[w.order[0]].Tail) {
					if b, ok := c.windowBatch(nil, true); ok {
						return b, nil
					}
				}
				continue
			case p.caughtUp:
				r, ok := w.st[p.win]
				if !ok {
					continue
				}
				r.Tok, r.Skip = p.next, 0
				if len(w.st) == 1 {
					// Caught up with every window: one empty batch, so
					// that the pipeline knows the backlog is read.
					b, _ := c.windowBatch(nil, true)
					return b, nil
				}
				continue
			}
			r, ok := w.st[p.win]
			if !ok || len(p.events) == 0 {
				continue
			}

			w.cur, w.off = &p, p.skip
			r.seen.newPage(p.events, p.skip)
		}
		p := w.cur
		r := w.st[p.win]
		// Compacted in place over the page's array, as Read does.
		evs := p.events[w.off:w.off]
		for w.off < len(p.events) && len(evs) < most {
			ev := p.events[w.off]
			w.off++
			if r.seen.dup(&ev) {
				c.duplicates.Add(1)
				continue
			}
			if !ev.Timestamp.IsZero() {
				r.At = max(r.At, ev.Timestamp.UnixMilli())
			}
			if c.types != nil && !c.types[ev.Type] && ev.Reject == "" {
				continue
			}
			evs = append(evs, ev)
		}
		if w.off >= len(p.events) {
			r.Tok, r.Skip = p.next, 0
			w.cur = nil
		} else {
			r.Tok, r.Skip = p.reqToken, w.off
		}
		w.events.Add(uint64(len(evs)))
		if len(evs) == 0 {
			evs = nil
		}
		// Capped, so that appending to the batch cannot overwrite the
		// page's events still to be read.
		if b, ok := c.windowBatch(evs[:len(evs):len(evs)], false); ok {
			return b, nil
		}
	}
}

// failPending returns the pending failures as one error (the first, and
// how many other windows failed), and marks their windows to be read again
// from where they failed at the next Read.
func (w *windowed) failPending() error {
	err := w.pending[0].err
	if n := len(w.pending) - 1; n > 0 {
		err = fmt.Errorf("%w (and %d other windows failed at the same time)", err, n)
	}
	for _, p := range w.pending {
		if r, ok := w.st[p.win]; ok {
			r.Tok, r.Skip = p.reqToken, p.skip // where the failed request was
		}
		w.resumes = append(w.resumes, p.win)
	}
	w.pending = w.pending[:0]
	return err
}

// finish drops a window read to its end.
func (w *windowed) finish(id int) {
	delete(w.st, id)
	w.order = slices.DeleteFunc(w.order, func(x int) bool { return x == id })
}

// windowBatch returns evs with the Position of every window's delivered
// state; ok is false when there is nothing to return (no event, and the
// Position did not change), unless always.
func (c *Client) windowBatch(evs []source.Event, always bool) (source.Batch, bool) {
	pos := c.win.position()
	c.win.updateStats()
	if len(evs) == 0 && pos == c.last && !always {
		return source.Batch{}, false
	}
	c.last = pos
	return source.Batch{Events: evs, Position: pos}, true
}

// position encodes the delivered state of every unfinished window; once
// only the started tail remains, its token alone.
func (w *windowed) position() source.Position {
	if len(w.order) == 1 {
		if r := w.st[w.order[0]]; r.Tail && r.Tok != "" {
			if r.Skip > 0 {
				return source.Position(skipPrefix + strconv.Itoa(r.Skip) + ";" + r.Tok)
			}
			return source.Position(r.Tok)
		}
	}
	wp := windowsPos{Total: w.total, W: make([]winPos, 0, len(w.order)), Low: -1}
	for _, id := range w.order {
		r := w.st[id]
		wp.W = append(wp.W, r.winPos)
		if l := r.low(); wp.Low < 0 || l < wp.Low {
			wp.Low = l
		}
	}
	b, err := json.Marshal(wp)
	if err != nil {
		panic(err) // plain strings and numbers
	}
	return source.Position(windowsPrefix + string(b))
}

// updateStats refreshes the snapshot Windows returns. Windows hold about
// the same number of events by plan, so the share covered is the mean over
// the closed windows of how far each is (1 when done; for a window under
// way, the time it reached over its range).
func (w *windowed) updateStats() {
	s := WindowStats{Total: w.total, Done: w.total - len(w.order)}
	low := int64(-1)
	closed := w.total
	var left float64
	for _, id := range w.order {
		r := w.st[id]
		if l := r.low(); low < 0 || l < low {
			low = l
		}
		if r.Tail {
			closed--
			continue
		}
		if span := r.End - r.Start; span > 0 {
			left += 1 - min(1, float64(r.low()-r.Start)/float64(span))
		}
	}
	if low >= 0 {
		s.Low = time.UnixMilli(low).UTC()
	}
	s.Covered = 1
	if closed > 0 {
		s.Covered = 1 - left/float64(closed)
	}
	w.mu.Lock()
	w.stats = s
	w.mu.Unlock()
}

// progressEvery is how often a backfill logs its progress.
const progressEvery = 10 * time.Second

// progress logs, every progressEvery until every backfill window is done,
// the windows done, the events delivered, the low watermark, the rate and
// an estimate of the time left.
func (c *Client) progress(ctx context.Context) {
	w := c.win
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	start, startCovered := time.Now(), w.snapshot().Covered
	var lastEvents uint64
	last := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s := w.snapshot()
			n := w.events.Load()
			attrs := []any{"windows_done", s.Done, "windows_total", s.Total, "events", n,
				"events_per_second", int(float64(n-lastEvents) / now.Sub(last).Seconds())}
			if !s.Low.IsZero() {
				attrs = append(attrs, "slowest_window_at", s.Low.Format(time.RFC3339))
			}
			if done := s.Covered - startCovered; done > 0 && s.Covered < 1 {
				eta := time.Duration(float64(now.Sub(start)) * (1 - s.Covered) / done)
				attrs = append(attrs, "covered", fmt.Sprintf("%.1f%%", 100*s.Covered), "eta", eta.Round(time.Second).String())
			}
			c.cfg.Logger.Info("backfill progress", attrs...)
			lastEvents, last = n, now
			if s.Total > 0 && s.Done >= s.Total-1 {
				return // only the tail is left: the backfill is over
			}
		}
	}
}

func (w *windowed) snapshot() WindowStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// seenSets holds the keys (seenKey) of the events of the last two pages of
// a stream that delivered something new, to drop the events a server
// repeats at the start of a page. A page of repeated events only (a
// server that repeats the tail of a window, or of the stream, again and
// again) does not push the older page out.
type seenSets struct {
	prev, cur map[string]struct{}
	pending   bool // a page started: rotate at its first new event
	size      int
}

// newPage starts a page of events, of which the first skip were delivered
// before a resume.
func (s *seenSets) newPage(events []source.Event, skip int) {
	s.pending, s.size = true, len(events)
	if skip > 0 {
		s.rotate()
		for i := range events[:min(skip, len(events))] {
			s.cur[seenKey(&events[i])] = struct{}{}
		}
	}
}

func (s *seenSets) rotate() {
	s.prev, s.cur = s.cur, make(map[string]struct{}, s.size)
	s.pending = false
}

// dup reports whether ev was seen on the last two pages, and records it if not.
func (s *seenSets) dup(ev *source.Event) bool {
	key := seenKey(ev)
	if _, ok := s.cur[key]; ok {
		return true
	}
	if _, ok := s.prev[key]; ok {
		return true
	}
	if s.pending || s.cur == nil {
		s.rotate()
	}
	s.cur[key] = struct{}{}
	return false
}
