package eventapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/testenv"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
)

// fakeBilling serves the billing look-ups from a fixed map of bodies and
// counts the requests per path; fail, when set, answers instead.
type fakeBilling struct {
	mu       sync.Mutex
	bodies   map[string]string
	hits     map[string]int
	inFlight atomic.Int32
	maxIn    atomic.Int32
	fail     func(w http.ResponseWriter, r *http.Request) bool
}

func (b *fakeBilling) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for {
		m := b.maxIn.Load()
		if n <= m || b.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond) // let concurrent look-ups overlap
	b.mu.Lock()
	b.hits[r.URL.Path]++
	body, ok := b.bodies[strings.TrimPrefix(r.URL.Path, "/billing/"+testTenant+"/")]
	fail := b.fail
	b.mu.Unlock()
	if fail != nil && fail(w, r) {
		return
	}
	if !ok {
		writeJSONError(w, 404, "notFound", "no such entity")
		return
	}
	w.Write([]byte(body))
}

func (b *fakeBilling) total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, h := range b.hits {
		n += h
	}
	return n
}

func billingEvent(loc, typ, key, entity string, complete bool, items ...string) source.Event {
	q := make([]string, len(items))
	for i, it := range items {
		q[i] = fmt.Sprintf("%q", it)
	}
	data := fmt.Sprintf(`{%q:%q,"policyLocators":{"listCompleted":%t,"items":[%s]}}`, key, entity, complete, strings.Join(q, ","))
	return source.Event{Locator: loc, Type: typ, Flavor: source.FlavorSuite, Data: []byte(data)}
}

func newBilling(t *testing.T) (*fakeBilling, Config) {
	t.Helper()
	invoice := func(pols ...string) string {
		var items []string
		for _, p := range pols {
			items = append(items, fmt.Sprintf(`{"locator":"it-%s","policyLocator":%q,"amount":10}`, p, p))
		}
		return `{"locator":"x","invoiceState":"open","invoiceItems":[` + strings.Join(items, ",") + `]}`
	}
	b := &fakeBilling{hits: map[string]int{}, bodies: map[string]string{
		"invoices/I1":      invoice("P1", "P2", "P3", "P4", "P5", "P6", "P7", "P7"),
		"invoices/I2":      invoice("P8", "P1"),
		"payments/PAY1":    `{"locator":"PAY1","targets":[{"containerType":"invoice","containerLocator":"I1","amount":1},{"containerType":"invoice","containerLocator":"I2","amount":2}]}`,
		"payments/PAY2":    `{"locator":"PAY2","targets":[{"containerType":"account","containerLocator":"A1","amount":1}]}`,
		"delinquencies/D1": `{"locator":"D1","references":[{"referenceType":"policy","referenceLocator":"P9"},{"referenceType":"invoice","referenceLocator":"I2"}]}`,
	}}
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	cfg := testConfig(source.FlavorSuite, srv.URL)
	cfg.EnrichPolicyLocators = true
	cfg.EnrichConcurrency = 2
	return b, cfg
}

func TestEnricherComplete(t *testing.T) {
	b, cfg := newBilling(t)
	e, err := NewEnricher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	five := []string{"P1", "P2", "P3", "P4", "P5"}
	events := []source.Event{
		billingEvent("e1", "billing.invoice.generate", "invoiceLocator", "I1", false, five...),
		billingEvent("e2", "billing.invoice.settle", "invoiceLocator", "I1", true, "P1"),
		billingEvent("e3", "billing.payment.post", "paymentLocator", "PAY1", false, five...),
		billingEvent("e4", "billing.payment.create", "paymentLocator", "PAY2", false, five...),
		billingEvent("e5", "billing.delinquency.create", "delinquencyLocator", "D1", false, "P9"),
		billingEvent("e6", "billing.writeoff.create", "writeOffLocator", "W1", false, five...),
		billingEvent("e7", "billing.invoice.generate", "invoiceLocator", "I404", false, five...),
		{Locator: "e8", Type: "policy.issue", Flavor: source.FlavorSuite, Data: []byte(`{"policyLocator":"P1"}`)},
		billingEvent("e9", "billing.invoice.generate", "invoiceLocator", "I1", false, five...),
	}
	ctx := testenv.Context(t, 10*time.Second)
	got, err := e.Complete(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"P1", "P2", "P3", "P4", "P5", "P6", "P7"}
	want := map[string][]string{
		"e1": all,
		"e3": append(append([]string(nil), all...), "P8"),
		"e5": {"P1", "P8", "P9"},
		"e9": all,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Complete = %v, want %v", got, want)
	}
	b.mu.Lock()
	for path, n := range b.hits {
		if n != 1 {
			t.Errorf("%s fetched %d times, want once (concurrent look-ups of one entity are shared)", path, n)
		}
	}
	b.mu.Unlock()
	if m := b.maxIn.Load(); m > 2 {
		t.Errorf("%d concurrent look-ups, want at most --enrich.concurrency=2", m)
	}
	for _, ev := range events {
		_, resolved := want[ev.Locator]
		if resolved && !NeedsCompletion(ev) {
			t.Errorf("NeedsCompletion(%s) = false for a resolved event", ev.Locator)
		}
	}
	before := b.total()
	again, err := e.Complete(ctx, events[:6])
	if err != nil {
		t.Fatal(err)
	}
	if after := b.total(); after != before+1 { // PAY2 is unresolvable, so not cached
		t.Errorf("second Complete made %d requests, want 1 (the rest cached)", after-before)
	}
	if !reflect.DeepEqual(again["e3"], want["e3"]) {
		t.Errorf("cached e3 = %v, want %v", again["e3"], want["e3"])
	}
}

// completeRetrying calls Complete as the pipeline does: a transient error is
// retried (at once), a permanent one returned. It returns the errors retried.
func completeRetrying(t *testing.T, ctx context.Context, e *Enricher, events []source.Event) (map[string][]string, []error, error) {
	t.Helper()
	var errs []error
	for {
		got, err := e.Complete(ctx, events)
		if err == nil || fault.IsPermanent(err) || ctx.Err() != nil {
			return got, errs, err
		}
		if len(errs) >= maxFailuresInRow {
			t.Fatalf("Complete after %d transient errors: %v", len(errs), err)
		}
		errs = append(errs, err)
	}
}

// TestEnricherErrors checks that every look-up makes one attempt: a failed
// one fails Complete, classified like a page fetch, and the next Complete
// repeats only what failed.
func TestEnricherErrors(t *testing.T) {
	tests := []struct {
		name       string
		fail       func(n int) (status int, ok bool)
		tokenFile  bool
		permanent  bool
		after      time.Duration
		wantErrors int // transient errors before success
	}{
		{"500 then fine", func(n int) (int, bool) { return 500, n == 0 }, false, false, 0, 1},
		{"429 then fine", func(n int) (int, bool) { return 429, n < 2 }, false, false, 10 * time.Millisecond, 2},
		{"401", func(n int) (int, bool) { return 401, true }, false, true, 0, 0},
		{"403", func(n int) (int, bool) { return 403, true }, false, true, 0, 0},
		{"401 with a token file, then fine", func(n int) (int, bool) { return 401, n < 3 }, true, false, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, cfg := newBilling(t)
			var calls atomic.Int32
			b.fail = func(w http.ResponseWriter, r *http.Request) bool {
				status, ok := tt.fail(int(calls.Add(1) - 1))
				if ok {
					w.Header().Set("Retry-After", "0.01")
					writeJSONError(w, status, "err", "look-up refused")
				}
				return ok
			}
			if tt.tokenFile {
				cfg.Token, cfg.TokenFile = "", filepath.Join(t.TempDir(), "token")
				if err := os.WriteFile(cfg.TokenFile, []byte("tok"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			e, err := NewEnricher(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ev := billingEvent("e1", "billing.invoice.generate", "invoiceLocator", "I1", false, "P1")
			got, errs, err := completeRetrying(t, testenv.Context(t, 10*time.Second), e, []source.Event{ev})
			if tt.permanent {
				if !fault.IsPermanent(err) || !strings.Contains(err.Error(), "look-up refused") || !strings.Contains(err.Error(), "event e1") {
					t.Fatalf("Complete error = %v, want a permanent error naming the event, with the server's message", err)
				}
				if n := calls.Load(); n != 1 {
					t.Errorf("%d look-ups, want 1", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if len(errs) != tt.wantErrors {
				t.Errorf("Complete failed %d times (%v), want %d: one attempt per look-up", len(errs), errs, tt.wantErrors)
			}
			for _, err := range errs {
				if got := fault.RetryAfter(err); got != tt.after {
					t.Errorf("RetryAfter(%v) = %v, want %v", err, got, tt.after)
				}
			}
			if len(got["e1"]) != 7 {
				t.Errorf("Complete = %v, want e1's 7 policies after the retry", got)
			}
		})
	}
}

// TestEnricherRetryRepeatsOnlyFailures fails one of two look-ups: Complete
// fails, and the second Complete fetches only the one that failed.
func TestEnricherRetryRepeatsOnlyFailures(t *testing.T) {
	b, cfg := newBilling(t)
	var failedOnce atomic.Bool
	b.fail = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/delinquencies/D1") && failedOnce.CompareAndSwap(false, true) {
			writeJSONError(w, 502, "bad_gateway", "proxy hiccup")
			return true
		}
		return false
	}
	e, err := NewEnricher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := []source.Event{
		billingEvent("e1", "billing.invoice.generate", "invoiceLocator", "I1", false, "P1"),
		billingEvent("e5", "billing.delinquency.create", "delinquencyLocator", "D1", false, "P9"),
	}
	ctx := testenv.Context(t, 10*time.Second)
	_, err = e.Complete(ctx, events)
	if err == nil || fault.IsPermanent(err) || !strings.Contains(err.Error(), "the policy lists of 1 of 2 events could not be completed") ||
		!strings.Contains(err.Error(), "HTTP 502") {
		t.Fatalf("first Complete = %v, want a transient error saying one of two failed", err)
	}
	before := b.total()
	got, err := e.Complete(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Errorf("second Complete = %v, want both events", got)
	}
	// D1 again, and I2 which D1 references (never fetched: D1 failed first).
	if n := b.total() - before; n != 2 {
		t.Errorf("second Complete made %d requests, want 2 (I1 cached)", n)
	}
}

// TestEnricherCancelled cancels the context while a look-up waits for its
// answer: Complete returns the context's error.
func TestEnricherCancelled(t *testing.T) {
	b, cfg := newBilling(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.fail = func(w http.ResponseWriter, r *http.Request) bool {
		cancel()
		<-r.Context().Done() // the client gives up
		return true
	}
	e, err := NewEnricher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ev := billingEvent("e1", "billing.invoice.generate", "invoiceLocator", "I1", false, "P1")
	if _, err := e.Complete(ctx, []source.Event{ev}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Complete cancelled = %v, want the context's error", err)
	}
}

// TestEnricherSkipsRejects: a rejected event is never looked up.
func TestEnricherSkipsRejects(t *testing.T) {
	ev := billingEvent("e1", "billing.invoice.generate", "invoiceLocator", "I1", false, "P1")
	ev.Reject, ev.Data = "missing_field: timestamp", []byte(`{"policyLocators":{"listCompleted":false,"items":["P1"]},"invoiceLocator":"I1"}`)
	if NeedsCompletion(ev) {
		t.Error("NeedsCompletion of a rejected event = true, want false")
	}
}

func TestLRUBounded(t *testing.T) {
	c := newLRU(2)
	c.put("a", []string{"1"})
	c.put("b", []string{"2"})
	c.get("a") // a is now the most recent
	c.put("c", []string{"3"})
	tests := []struct {
		key  string
		want bool
	}{{"a", true}, {"b", false}, {"c", true}}
	for _, tt := range tests {
		if _, got := c.get(tt.key); got != tt.want {
			t.Errorf("get(%q) found = %t, want %t", tt.key, got, tt.want)
		}
	}
	if got := c.len(); got != 2 {
		t.Errorf("len = %d, want 2", got)
	}
}

func TestEnricherReportsLookups(t *testing.T) {
	_, cfg := newBilling(t)
	var mu sync.Mutex
	got := map[string]int{}
	cfg.OnLookup = func(result string) { mu.Lock(); got[result]++; mu.Unlock() }
	e, err := NewEnricher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	five := []string{"P1", "P2", "P3", "P4", "P5"}
	events := []source.Event{
		billingEvent("e1", "billing.invoice.generate", "invoiceLocator", "I1", false, five...),
		billingEvent("e7", "billing.invoice.generate", "invoiceLocator", "I404", false, five...),
	}
	ctx := testenv.Context(t, 10*time.Second)
	for range 2 {
		if _, err := e.Complete(ctx, events); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{"miss": 1, "hit": 1, "not_found": 2}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("look-up results %v, want %v", got, want)
	}
}

// TestEnricherWarm: Warm starts the look-ups of incomplete events in the
// background, one per entity however many events name it; the Complete
// that follows finds them all cached and makes no request.
func TestEnricherWarm(t *testing.T) {
	b, cfg := newBilling(t)
	var mu sync.Mutex
	got := map[string]int{}
	cfg.OnLookup = func(result string) { mu.Lock(); got[result]++; mu.Unlock() }
	e, err := NewEnricher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	five := []string{"P1", "P2", "P3", "P4", "P5"}
	events := []source.Event{
		billingEvent("e1", "billing.invoice.generate", "invoiceLocator", "I1", false, five...),
		billingEvent("e2", "billing.invoice.issue", "invoiceLocator", "I1", false, five...),
		billingEvent("e3", "billing.payment.create", "paymentLocator", "PAY1", false, five...),
		billingEvent("e4", "billing.delinquency.create", "delinquencyLocator", "D1", false, "P9"),
		billingEvent("e5", "billing.invoice.generate", "invoiceLocator", "I2", true, "P8", "P1"), // complete: no look-up
	}
	ctx := testenv.Context(t, 10*time.Second)
	e.Warm(ctx, events)
	// I1, I2 (a target of PAY1 and a reference of D1), PAY1, D1: four
	// entities, four requests, whatever the order they run in.
	for b.total() < 4 || len(e.ahead) > 0 {
		if ctx.Err() != nil {
			t.Fatalf("the warmed look-ups did not finish: %d requests", b.total())
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	misses := got["miss"]
	mu.Unlock()
	if misses != 4 || b.total() != 4 {
		t.Fatalf("warming: %d look-ups fetched, %d requests, want 4 and 4 (%v)", misses, b.total(), got)
	}
	full, err := e.Complete(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	if len(full) != 4 || b.total() != 4 {
		t.Errorf("Complete after Warm: %d lists, %d requests in all, want 4 lists and no new request", len(full), b.total())
	}
}

// TestEnricherGivesUp: an event whose look-up keeps failing holds Complete
// back (a transient error, retried) until it has failed for
// --enrich.give-up; then Complete leaves it out (written with its list
// marked incomplete) and counts it, and the other events are completed. A
// look-up that works again is made again.
func TestEnricherGivesUp(t *testing.T) {
	b, cfg := newBilling(t)
	cfg.EnrichGiveUp = time.Minute
	var mu sync.Mutex
	got := map[string]int{}
	cfg.OnLookup = func(result string) { mu.Lock(); got[result]++; mu.Unlock() }
	var down atomic.Bool
	down.Store(true)
	b.fail = func(w http.ResponseWriter, r *http.Request) bool {
		if down.Load() && strings.HasSuffix(r.URL.Path, "/invoices/I2") {
			writeJSONError(w, http.StatusInternalServerError, "internal", "down")
			return true
		}
		return false
	}
	e, err := NewEnricher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return clock }
	five := []string{"P1", "P2", "P3", "P4", "P5"}
	events := []source.Event{
		billingEvent("e1", "billing.invoice.generate", "invoiceLocator", "I1", false, five...),
		billingEvent("e2", "billing.invoice.generate", "invoiceLocator", "I2", false, "P8"),
	}
	ctx := testenv.Context(t, 10*time.Second)
	for _, step := range []time.Duration{0, 59 * time.Second} {
		clock = clock.Add(step)
		if _, err := e.Complete(ctx, events); err == nil || fault.IsPermanent(err) {
			t.Fatalf("after %s of failures: %v, want a transient error", step, err)
		}
	}
	clock = clock.Add(time.Second)
	full, err := e.Complete(ctx, events)
	if err != nil {
		t.Fatalf("after the give-up time: %v", err)
	}
	if _, ok := full["e2"]; ok || len(full["e1"]) == 0 {
		t.Errorf("after the give-up time: %v, want e1 completed and e2 left out", full)
	}
	mu.Lock()
	if got["gave_up"] != 1 {
		t.Errorf("gave_up counted %d times, want 1 (%v)", got["gave_up"], got)
	}
	mu.Unlock()
	down.Store(false)
	full, err = e.Complete(ctx, events)
	if err != nil || !reflect.DeepEqual(full["e2"], []string{"P1", "P8"}) {
		t.Errorf("once the look-up works again: %v, %v; want e2 completed", full, err)
	}
}

// TestEnricherStoreAcrossRestarts: with a look-up store (the ClickHouse
// table run uses), what the API answered is stored before Complete
// returns, so an enricher of a restarted process completes the same events
// without a single request, and to the same lists.
func TestEnricherStoreAcrossRestarts(t *testing.T) {
	testenv.ForEachClickHouse(t, func(t *testing.T, ch *testenv.ClickHouseServer) {
		ctx := testenv.Context(t, 2*time.Minute)
		b, cfg := newBilling(t)
		chcfg := chsink.DefaultConfig()
		chcfg.Addr, chcfg.Database, chcfg.Settings = []string{ch.Addr}, ch.Database, ch.Settings
		five := []string{"P1", "P2", "P3", "P4", "P5"}
		events := []source.Event{
			billingEvent("e1", "billing.invoice.generate", "invoiceLocator", "I1", false, five...),
			billingEvent("e3", "billing.payment.post", "paymentLocator", "PAY1", false, five...),
			billingEvent("e5", "billing.delinquency.create", "delinquencyLocator", "D1", false, "P9"),
		}
		run := func() map[string][]string {
			e, err := NewEnricher(cfg)
			if err != nil {
				t.Fatal(err)
			}
			e.WithStore(chsink.NewLookupStore(chcfg, testTenant))
			t.Cleanup(func() { e.Close() })
			out, err := e.Complete(ctx, events)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			return out
		}
		first := run()
		asked := b.total()
		if asked == 0 || len(first) != 3 {
			t.Fatalf("first process: %d look-ups, completed %v; want look-ups and three lists", asked, first)
		}
		second := run()
		if got := b.total(); got != asked {
			t.Errorf("the restarted process made %d look-ups; want none (all stored)", got-asked)
		}
		for loc, want := range first {
			if !slices.Equal(second[loc], want) {
				t.Errorf("event %s: %v after the restart, %v before", loc, second[loc], want)
			}
		}
	})
}
