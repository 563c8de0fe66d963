package eventapi

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/source"
)

// Enricher completes the policy-locator lists of suite billing events: an
// event carries at most five policy locators, and listCompleted false when
// there were more. Complete fetches the full list from the billing look-ups:
//
//   - billing.invoice.*: GET /billing/{t}/invoices/{invoiceLocator}, the
//     invoiceItems' policyLocator;
//   - billing.payment.*: GET /billing/{t}/payments/{paymentLocator}, then
//     every target invoice as above (a payment whose targets include an
//     account, a subpayment or a single invoice item cannot be resolved);
//   - billing.delinquency.*: GET /billing/{t}/delinquencies/{delinquencyLocator},
//     its references of type policy, and of type invoice as above.
//
// Write-offs have no look-up in the published API and stay incomplete.
// Look-ups run with bounded concurrency, make one attempt each (the caller
// retries Complete, which fetches again only what is not cached yet) and are
// kept in a bounded LRU cache. An Enricher is safe for concurrent use.
type Enricher struct {
	doer   *httpDoer
	tenant string
	sem    chan struct{}
	cache  *lru

	mu       sync.Mutex
	inflight map[string]*lookupCall // look-ups under way, shared by concurrent callers

	ahead chan struct{} // bounds the look-ups Warm starts and that are not done yet

	failing map[string]time.Time // guarded by mu: entities whose look-up fails, since when
	giveUp  time.Duration
	now     func() time.Time

	store LookupStore         // WithStore; nil: the memory cache only
	fresh map[string][]string // guarded by mu: answered by the API, not in store yet
}

// LookupStore keeps resolved look-ups across restarts (sink/clickhouse's
// LookupStore, a ClickHouse table), keyed like the memory cache
// (invoice/LOCATOR, payment/LOCATOR, delinquency/LOCATOR).
type LookupStore interface {
	// Get returns the stored policy lists of those of keys it holds.
	Get(ctx context.Context, keys []string) (map[string][]string, error)
	// Put stores policy lists; it returns once they are durable.
	Put(ctx context.Context, entries map[string][]string) error
}

// WithStore makes e read look-ups from store before it asks the API, and
// keep there what the API answered before Complete returns, so that a
// restart (a replay after kill -9 included) does not ask again for the
// entities of events already written. It returns e; call it before use.
func (e *Enricher) WithStore(store LookupStore) *Enricher {
	e.store = store
	e.fresh = map[string][]string{}
	return e
}

// Close closes the store's connection, when it has one.
func (e *Enricher) Close() error {
	if c, ok := e.store.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// lookupKey is the cache key of the look-up that resolves a billing event.
func lookupKey(typ string, d billingData) (string, bool) {
	switch {
	case strings.HasPrefix(typ, "billing.invoice.") && d.InvoiceLocator != "":
		return "invoice/" + d.InvoiceLocator, true
	case strings.HasPrefix(typ, "billing.payment.") && d.PaymentLocator != "":
		return "payment/" + d.PaymentLocator, true
	case strings.HasPrefix(typ, "billing.delinquency.") && d.DelinquencyLocator != "":
		return "delinquency/" + d.DelinquencyLocator, true
	}
	return "", false
}

// need is an event whose policy list is incomplete, with the key of the
// look-up that completes it ("" when none can).
type need struct {
	ev  source.Event
	d   billingData
	key string
}

// needs returns the events of events that NeedsCompletion, each parsed once.
func needs(events []source.Event) []need {
	var out []need
	for _, ev := range events {
		if d, ok := incomplete(ev); ok {
			key, _ := lookupKey(ev.Type, d)
			out = append(out, need{ev: ev, d: d, key: key})
		}
	}
	return out
}

// preload copies into the memory cache what the store holds of the
// look-ups ns need and the cache has not.
func (e *Enricher) preload(ctx context.Context, ns []need) error {
	if e.store == nil {
		return nil
	}
	var keys []string
	for _, n := range ns {
		if n.key == "" {
			continue
		}
		if _, cached := e.cache.get(n.key); !cached {
			keys = append(keys, n.key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	got, err := e.store.Get(ctx, slices.Compact(keys))
	if err != nil {
		return fmt.Errorf("read stored look-ups: %w", err)
	}
	for k, pols := range got {
		e.cache.put(k, pols)
		e.observe("stored")
	}
	return nil
}

// flush stores what the API answered since the last flush.
func (e *Enricher) flush(ctx context.Context) error {
	if e.store == nil {
		return nil
	}
	e.mu.Lock()
	batch := maps.Clone(e.fresh)
	e.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := e.store.Put(ctx, batch); err != nil {
		return fmt.Errorf("store %d look-ups: %w", len(batch), err)
	}
	e.mu.Lock()
	for k := range batch {
		delete(e.fresh, k)
	}
	e.mu.Unlock()
	return nil
}

// lookupCall is one look-up under way; done closes when its result is set.
type lookupCall struct {
	done chan struct{}
	pols []string
	ok   bool
	err  error
}

// NewEnricher returns an Enricher for cfg (suite flavor), with its own HTTP
// connections.
func NewEnricher(cfg Config) (*Enricher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("event-stream configuration: %w", err)
	}
	cfg = cfg.withDefaults()
	if cfg.Flavor != source.FlavorSuite {
		return nil, errors.New("policy-locator enrichment applies to the suite flavor only")
	}
	d, err := newDoer(cfg)
	if err != nil {
		return nil, err
	}
	return newEnricher(d), nil
}

// Enricher returns an Enricher sharing c's connections, configuration and
// request budget. From then on, every page c fetches starts the look-ups
// of its incomplete events at once (Enricher.Warm), ahead of the
// pipeline's Complete, which then mostly finds them cached.
func (c *Client) Enricher() *Enricher {
	e := newEnricher(c.doer)
	c.mu.Lock()
	c.warm = e.Warm
	c.mu.Unlock()
	return e
}

// warmPage starts the look-ups of a page's incomplete events, when an
// Enricher asked for it.
func (c *Client) warmPage(ctx context.Context, evs []source.Event) {
	c.mu.Lock()
	warm := c.warm
	c.mu.Unlock()
	if warm != nil {
		warm(ctx, evs)
	}
}

// Warm starts, in the background, the look-ups of the events that
// NeedsCompletion, so that a later Complete of the same events finds them
// cached (or under way: a look-up is made once however many callers ask).
// It never blocks: when too many look-ups started by Warm are not done yet
// (4 × --enrich.cache-size / 10, at most 4096), the others are left to
// Complete. A failed look-up is not cached: Complete makes it again.
func (e *Enricher) Warm(ctx context.Context, events []source.Event) {
	ns := needs(events)
	if len(ns) == 0 {
		return
	}
	if e.store != nil {
		// One read of the store for the page, off the reader's path; what
		// it cannot read Complete reads again.
		go func() {
			_ = e.preload(ctx, ns)
			e.warm(ctx, ns)
		}()
		return
	}
	e.warm(ctx, ns)
}

func (e *Enricher) warm(ctx context.Context, ns []need) {
	for _, n := range ns {
		if n.key == "" {
			continue // nothing to look up
		}
		select {
		case e.ahead <- struct{}{}:
		default:
			return
		}
		go func() {
			defer func() { <-e.ahead }()
			_, _, _ = e.resolve(ctx, n.key)
		}()
	}
}

func newEnricher(d *httpDoer) *Enricher {
	return &Enricher{
		doer:   d,
		tenant: d.cfg.Tenant,
		sem:    make(chan struct{}, d.cfg.EnrichConcurrency),
		cache:  newLRU(d.cfg.EnrichCacheSize),

		inflight: map[string]*lookupCall{},
		ahead:    make(chan struct{}, min(4096, max(1, d.cfg.EnrichCacheSize*4/10))),
		failing:  map[string]time.Time{},
		giveUp:   d.cfg.EnrichGiveUp,
		now:      time.Now,
	}
}

// billingData is the part of a billing event's payload the Enricher reads.
type billingData struct {
	InvoiceLocator     string `json:"invoiceLocator"`
	PaymentLocator     string `json:"paymentLocator"`
	DelinquencyLocator string `json:"delinquencyLocator"`
	PolicyLocators     *struct {
		ListCompleted bool     `json:"listCompleted"`
		Items         []string `json:"items"`
	} `json:"policyLocators"`
}

// NeedsCompletion reports whether ev is a suite billing event whose
// policyLocators list is incomplete.
func NeedsCompletion(ev source.Event) bool {
	_, ok := incomplete(ev)
	return ok
}

func incomplete(ev source.Event) (billingData, bool) {
	if ev.Flavor != source.FlavorSuite || ev.Reject != "" || !strings.HasPrefix(ev.Type, "billing.") {
		return billingData{}, false
	}
	var d billingData
	if json.Unmarshal(ev.Data, &d) != nil || d.PolicyLocators == nil || d.PolicyLocators.ListCompleted {
		return billingData{}, false
	}
	return d, true
}

// Complete returns, keyed by event locator, the full sorted policy-locator
// list of every event of events that NeedsCompletion and could be resolved.
// Events that cannot be resolved (a write-off, a payment to an account, a
// look-up answering 404) are left out: their lists stay marked incomplete.
//
// Every look-up makes one attempt. If any fails, Complete returns no map but
// an error classified like a page fetch's (internal/fault: a permanent one,
// such as a 401 with a literal token, if any look-up failed permanently, which
// also cancels the others; else the first transient one), and the caller
// retries it: look-ups that succeeded are cached, so a retry repeats only the
// failed ones. It returns ctx's error when ctx ends first.
func (e *Enricher) Complete(ctx context.Context, events []source.Event) (map[string][]string, error) {
	out := map[string][]string{}
	var (
		mu                sync.Mutex
		wg                sync.WaitGroup
		firstErr, permErr error
		failed, lookedUp  int
	)
	ns := needs(events)
	if err := e.preload(ctx, ns); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, n := range ns {
		ev, d := n.ev, n.d
		wg.Add(1)
		go func() {
			defer wg.Done()
			pols, ok, err := e.resolve(ctx, n.key)
			if err != nil && !fault.IsPermanent(err) && ctx.Err() == nil && e.givesUp(n.key) {
				e.observe("gave_up")
				err, ok = nil, false // written with its list marked incomplete
			} else if err == nil {
				e.recovered(n.key)
			}
			mu.Lock()
			defer mu.Unlock()
			lookedUp++
			if err != nil {
				failed++
				err = fmt.Errorf("complete policy locators of event %s (%s): %w", ev.Locator, ev.Type, err)
				if firstErr == nil {
					firstErr = err
				}
				if permErr == nil && fault.IsPermanent(err) {
					permErr = err
					cancel() // the others cannot change the outcome
				}
				return
			}
			if ok {
				out[ev.Locator] = union(d.PolicyLocators.Items, pols)
			}
		}()
	}
	wg.Wait()
	switch {
	case permErr != nil:
		return nil, permErr
	case ctx.Err() != nil && firstErr != nil:
		return nil, fmt.Errorf("complete policy locators: %w", ctx.Err())
	case firstErr != nil:
		return nil, fmt.Errorf("the policy lists of %d of %d events could not be completed, the first: %w", failed, lookedUp, firstErr)
	}
	// Stored before the events are written: a replay of any written event
	// finds its look-up in the store.
	if err := e.flush(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// givesUp notes that the look-up of key failed, and reports whether it has
// been failing for --enrich.give-up or longer.
func (e *Enricher) givesUp(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	since, ok := e.failing[key]
	if !ok {
		e.failing[key] = now
		return false
	}
	return now.Sub(since) >= e.giveUp
}

// recovered forgets a failing look-up that succeeded.
func (e *Enricher) recovered(key string) {
	e.mu.Lock()
	delete(e.failing, key)
	e.mu.Unlock()
}

// resolve returns the policy locators of the entity key names (lookupKey);
// ok is false when it cannot be resolved (no key: a write-off, a billing
// event without its entity's locator).
func (e *Enricher) resolve(ctx context.Context, key string) ([]string, bool, error) {
	kind, loc, _ := strings.Cut(key, "/")
	switch kind {
	case "invoice":
		return e.invoice(ctx, loc)
	case "payment":
		return e.payment(ctx, loc)
	case "delinquency":
		return e.delinquency(ctx, loc)
	}
	return nil, false, nil
}

func (e *Enricher) invoice(ctx context.Context, loc string) ([]string, bool, error) {
	return e.cached(ctx, "invoice/"+loc, func() ([]string, bool, error) { return e.fetchInvoice(ctx, loc) })
}

func (e *Enricher) fetchInvoice(ctx context.Context, loc string) ([]string, bool, error) {
	var v struct {
		InvoiceItems []struct {
			PolicyLocator string `json:"policyLocator"`
		} `json:"invoiceItems"`
	}
	ok, err := e.lookup(ctx, "invoices", loc, &v)
	if err != nil || !ok {
		return nil, false, err
	}
	var pols []string
	for _, it := range v.InvoiceItems {
		if it.PolicyLocator != "" {
			pols = append(pols, it.PolicyLocator)
		}
	}
	return union(nil, pols), true, nil
}

func (e *Enricher) payment(ctx context.Context, loc string) ([]string, bool, error) {
	return e.cached(ctx, "payment/"+loc, func() ([]string, bool, error) { return e.fetchPayment(ctx, loc) })
}

func (e *Enricher) fetchPayment(ctx context.Context, loc string) ([]string, bool, error) {
	var v struct {
		Targets []struct {
			ContainerLocator string `json:"containerLocator"`
			ContainerType    string `json:"containerType"`
		} `json:"targets"`
	}
	ok, err := e.lookup(ctx, "payments", loc, &v)
	if err != nil || !ok {
		return nil, false, err
	}
	var all []string
	for _, t := range v.Targets {
		if t.ContainerType != "invoice" {
			return nil, false, nil
		}
		pols, ok, err := e.invoice(ctx, t.ContainerLocator)
		if err != nil || !ok {
			return nil, false, err
		}
		all = append(all, pols...)
	}
	return union(nil, all), true, nil
}

func (e *Enricher) delinquency(ctx context.Context, loc string) ([]string, bool, error) {
	return e.cached(ctx, "delinquency/"+loc, func() ([]string, bool, error) { return e.fetchDelinquency(ctx, loc) })
}

func (e *Enricher) fetchDelinquency(ctx context.Context, loc string) ([]string, bool, error) {
	var v struct {
		References []struct {
			ReferenceLocator string `json:"referenceLocator"`
			ReferenceType    string `json:"referenceType"`
		} `json:"references"`
	}
	ok, err := e.lookup(ctx, "delinquencies", loc, &v)
	if err != nil || !ok {
		return nil, false, err
	}
	var all []string
	for _, r := range v.References {
		switch r.ReferenceType {
		case "policy":
			all = append(all, r.ReferenceLocator)
		case "invoice":
			pols, ok, err := e.invoice(ctx, r.ReferenceLocator)
			if err != nil || !ok {
				return nil, false, err
			}
			all = append(all, pols...)
		default:
			return nil, false, nil
		}
	}
	return union(nil, all), true, nil
}

// lookup GETs /billing/{tenant}/{kind}/{loc} into v; ok is false on 404.
func (e *Enricher) lookup(ctx context.Context, kind, loc string, v any) (bool, error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-e.sem }()
	path := "/billing/" + url.PathEscape(e.tenant) + "/" + kind + "/" + url.PathEscape(loc)
	err := e.doer.getJSON(ctx, path, nil, func(b []byte) error { return json.Unmarshal(b, v) })
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// cached returns the cached resolution of key, or computes it with f once
// however many callers ask at the same time, and caches a successful one.
func (e *Enricher) cached(ctx context.Context, key string, f func() ([]string, bool, error)) ([]string, bool, error) {
	if pols, ok := e.cache.get(key); ok {
		e.observe("hit")
		return pols, true, nil
	}
	e.mu.Lock()
	if c, ok := e.inflight[key]; ok {
		e.mu.Unlock()
		select {
		case <-c.done:
			return c.pols, c.ok, c.err
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	c := &lookupCall{done: make(chan struct{})}
	e.inflight[key] = c
	e.mu.Unlock()
	c.pols, c.ok, c.err = f()
	switch {
	case c.err != nil:
		e.observe("error")
	case !c.ok:
		e.observe("not_found")
	default:
		e.observe("miss")
		e.cache.put(key, c.pols)
		if e.store != nil {
			e.mu.Lock()
			e.fresh[key] = c.pols
			e.mu.Unlock()
		}
	}
	e.mu.Lock()
	delete(e.inflight, key)
	e.mu.Unlock()
	close(c.done)
	return c.pols, c.ok, c.err
}

// observe reports one look-up's result to Config.OnLookup, if set.
func (e *Enricher) observe(result string) {
	if f := e.doer.cfg.OnLookup; f != nil {
		f(result)
	}
}

// union returns the sorted distinct locators of a and b.
func union(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// lru is a bounded least-recently-used cache of resolved policy-locator lists.
type lru struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recent; values are *lruEntry
	items map[string]*list.Element
}

type lruEntry struct {
	key  string
	pols []string
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: map[string]*list.Element{}}
}

func (c *lru) get(key string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruEntry).pols, true
}

func (c *lru) put(key string, pols []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value.(*lruEntry).pols = pols
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&lruEntry{key: key, pols: pols})
	for c.order.Len() > c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(*lruEntry).key)
	}
}

func (c *lru) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
