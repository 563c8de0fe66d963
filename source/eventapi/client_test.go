package eventapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/cli"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// open returns an opened Client for cfg, closed at the test's end.
func open(t *testing.T, cfg Config, from source.Position) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := c.Open(context.Background(), from); err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// waitRequests waits until f has served at least n requests, failing after 10 s.
func waitRequests(t *testing.T, f *fakeStream, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.requests()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests after 10 s, want at least %d", len(f.requests()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readN reads batches of at most max until it has n events, failing after d
// or on a permanent error. Transient errors are retried as the pipeline does.
func readN(t *testing.T, c *Client, n, max int, d time.Duration) ([]source.Event, []source.Batch) {
	t.Helper()
	evs, batches, _ := readNErrs(t, c, n, max, d)
	return evs, batches
}

// maxFailuresInRow bounds the transient failures in a row readRetrying
// accepts, so that a server that never recovers fails the test.
const maxFailuresInRow = 200

// readNErrs is readN that also returns the transient errors it retried.
func readNErrs(t *testing.T, c *Client, n, max int, d time.Duration) ([]source.Event, []source.Batch, []error) {
	t.Helper()
	ctx := testenv.Context(t, d)
	var (
		evs     []source.Event
		batches []source.Batch
		errs    []error
	)
	for len(evs) < n {
		b, failed := readRetrying(t, ctx, c, max)
		errs = append(errs, failed...)
		if len(b.Events) > max {
			t.Fatalf("Read(max=%d) returned %d events", max, len(b.Events))
		}
		evs = append(evs, b.Events...)
		batches = append(batches, b)
	}
	return evs, batches, errs
}

// readRetrying calls Read until it succeeds, retrying transient errors at
// once (the pipeline would back off; the tests' servers recover by
// themselves), and returns the batch and the errors retried. A permanent
// error or too many failures in a row fail the test.
func readRetrying(t *testing.T, ctx context.Context, c *Client, max int) (source.Batch, []error) {
	t.Helper()
	var errs []error
	for {
		b, err := c.Read(ctx, max)
		if err == nil {
			return b, errs
		}
		if fault.IsPermanent(err) || ctx.Err() != nil || len(errs) >= maxFailuresInRow {
			t.Fatalf("Read after %d transient errors: %v", len(errs), err)
		}
		errs = append(errs, err)
	}
}

func TestReadWholeStream(t *testing.T) {
	for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
		t.Run(flavor, func(t *testing.T) {
			f, srv := newFake(t, flavor, 10)
			c := open(t, testConfig(flavor, srv.URL), "")
			evs, batches := readN(t, c, 10, 100, 10*time.Second)
			if got, want := locators(evs), wantLocators(flavor, 0, 10); !slices.Equal(got, want) {
				t.Fatalf("locators = %v, want %v", got, want)
			}
			if got, want := batches[len(batches)-1].Position, source.Position("p10"); got != want {
				t.Errorf("last position = %q, want %q", got, want)
			}
			if got, _ := f.authPath(0); got != "Bearer secret-token" {
				t.Errorf("Authorization = %q, want the bearer token", got)
			}
		})
	}
}

func TestFirstCallFiltersThenTokenAlone(t *testing.T) {
	start := time.Date(2024, 3, 1, 12, 30, 0, 250e6, time.UTC)
	end := start.Add(24 * time.Hour)
	tests := []struct {
		name       string
		flavor     string
		types      []string
		attributed bool
		wantPath   string
		wantFirst  map[string]string
	}{
		{"suite one type", source.FlavorSuite, []string{"policy.issue"}, false, "/event/" + testTenant + "/events/list",
			map[string]string{"startTimestamp": "2024-03-01T12:30:00.250Z", "endTimestamp": "2024-03-02T12:30:00.250Z", "type": "policy.issue", "pageSize": "3"}},
		{"suite two types filtered client-side", source.FlavorSuite, []string{"policy.issue", "policy.quote.create"}, false, "/event/" + testTenant + "/events/list",
			map[string]string{"startTimestamp": "2024-03-01T12:30:00.250Z", "endTimestamp": "2024-03-02T12:30:00.250Z", "pageSize": "3"}},
		{"classic", source.FlavorClassic, []string{"policy.issue"}, false, "/eventstream/events",
			map[string]string{"startTimestamp": "1709296200250", "endTimestamp": "1709382600250", "eventType": "policy.issue", "pageSize": "3"}},
		{"classic attributed", source.FlavorClassic, nil, true, "/eventstream/attributedEvents",
			map[string]string{"startTimestamp": "1709296200250", "endTimestamp": "1709382600250", "pageSize": "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFake(t, tt.flavor, 7)
			cfg := testConfig(tt.flavor, srv.URL)
			cfg.Start, cfg.End, cfg.Types, cfg.Attributed = start, end, tt.types, tt.attributed
			c := open(t, cfg, "")
			want := 7 // the fake ignores a server-side type filter
			ctx := testenv.Context(t, 10*time.Second)
			for n := 0; n < want; {
				b, err := c.Read(ctx, 100)
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range b.Events {
					if len(tt.types) > 1 && !slices.Contains(tt.types, ev.Type) {
						t.Errorf("event %s of type %s, want only %v", ev.Locator, ev.Type, tt.types)
					}
				}
				n += len(b.Events)
			}
			// Wait until the stream is caught up: at least 4 calls (3 pages and an empty one).
			deadline := time.Now().Add(5 * time.Second)
			for len(f.requests()) < 4 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			qs := f.requests()
			if len(qs) < 4 {
				t.Fatalf("%d requests, want at least 4", len(qs))
			}
			got := map[string]string{}
			for k := range qs[0] {
				got[k] = qs[0].Get(k)
			}
			if mustJSON(t, got) != mustJSON(t, tt.wantFirst) {
				t.Errorf("first query = %v, want %v", got, tt.wantFirst)
			}
			for i, q := range qs[1:] {
				if len(q) != 1 || q.Get("pagingToken") == "" {
					t.Errorf("follow-up query %d = %v, want the paging token alone", i+1, q)
				}
			}
			if _, path := f.authPath(0); path != tt.wantPath {
				t.Errorf("path = %q, want %q", path, tt.wantPath)
			}
		})
	}
}

func TestResumeFromPosition(t *testing.T) {
	tests := []struct {
		name      string
		from      source.Position
		wantFirst string // the token of the first call
		wantFrom  int    // the first event delivered
	}{
		{"token", "p4", "p4", 4},
		{"mid-page with token", "skip=2;p3", "p3", 5},
		{"mid-page of the first page", "skip=1;", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFake(t, source.FlavorSuite, 9)
			c := open(t, testConfig(source.FlavorSuite, srv.URL), tt.from)
			evs, _ := readN(t, c, 9-tt.wantFrom, 100, 10*time.Second)
			if got, want := locators(evs), wantLocators(source.FlavorSuite, tt.wantFrom, 9); !slices.Equal(got, want) {
				t.Errorf("locators = %v, want %v", got, want)
			}
			if got := f.requests()[0].Get("pagingToken"); got != tt.wantFirst {
				t.Errorf("first pagingToken = %q, want %q", got, tt.wantFirst)
			}
		})
	}
}

func TestInvalidPosition(t *testing.T) {
	_, srv := newFake(t, source.FlavorSuite, 1)
	c, err := New(testConfig(source.FlavorSuite, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Open(context.Background(), "skip=x;p1")
	if !fault.IsPermanent(err) || !strings.Contains(err.Error(), "tributary checkpoint reset --pipeline NAME") {
		t.Fatalf("Open with a broken skip position = %v, want a permanent error saying how to repair it", err)
	}
}

// TestMaxSplitsPages reads with a max smaller than a page and checks that
// every batch's Position resumes exactly after it.
func TestMaxSplitsPages(t *testing.T) {
	const n = 11
	_, srv := newFake(t, source.FlavorSuite, n)
	cfg := testConfig(source.FlavorSuite, srv.URL)
	c := open(t, cfg, "")
	evs, batches := readN(t, c, n, 2, 10*time.Second)
	if got, want := locators(evs), wantLocators(source.FlavorSuite, 0, n); !slices.Equal(got, want) {
		t.Fatalf("locators = %v, want %v", got, want)
	}
	seen := 0
	for i, b := range batches {
		seen += len(b.Events)
		if seen == n {
			break
		}
		r := open(t, cfg, b.Position)
		got, _ := readN(t, r, 1, 1, 10*time.Second)
		if got[0].Locator != evs[seen].Locator {
			t.Errorf("resume from batch %d position %q: first event %s, want %s", i, b.Position, got[0].Locator, evs[seen].Locator)
		}
	}
}

func TestTypesFilteredClientSide(t *testing.T) {
	f, srv := newFake(t, source.FlavorSuite, 0)
	f.mu.Lock()
	for i := range 9 {
		ev := fakeEvent(source.FlavorSuite, i)
		if i >= 3 && i < 6 { // a whole page of an unwanted type
			ev = strings.Replace(ev, `"type":"policy.issue"`, `"type":"billing.invoice.generate"`, 1)
			ev = strings.Replace(ev, `"type":"policy.quote.create"`, `"type":"billing.invoice.generate"`, 1)
		}
		f.events = append(f.events, ev)
	}
	f.mu.Unlock()
	cfg := testConfig(source.FlavorSuite, srv.URL)
	cfg.Types = []string{"policy.issue", "policy.quote.create"}
	c := open(t, cfg, "")
	ctx := testenv.Context(t, 10*time.Second)
	var got []string
	var positions []source.Position
	for len(got) < 6 {
		b, err := c.Read(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, locators(b.Events)...)
		positions = append(positions, b.Position)
	}
	want := []string{"L0000", "L0001", "L0002", "L0006", "L0007", "L0008"}
	if !slices.Equal(got, want) {
		t.Errorf("locators = %v, want %v", got, want)
	}
	if want := []source.Position{"p3", "p6", "p9"}; !slices.Equal(positions, want) {
		t.Errorf("positions = %v, want %v (an empty batch for the filtered page)", positions, want)
	}
}

// TestDuplicatesAcrossPagesDropped serves every follow-up page two events
// early; the repeats are dropped, rejected events (keyed by their raw bytes,
// since they may have no locator) included, and distinct rejects without a
// locator are not taken for repeats of each other.
func TestDuplicatesAcrossPagesDropped(t *testing.T) {
	tests := []struct {
		name    string
		rejects map[int]string // events replaced by unreadable ones
	}{
		{"readable events", nil},
		{"two rejects without locator repeated", map[int]string{
			4: `{"type":"policy.issue","timestamp":"2024-01-01T00:00:06.000Z","data":{"n":4}}`,
			5: `{"type":"policy.issue","timestamp":"2024-01-01T00:00:07.500Z","data":{"n":5}}`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testDuplicatesAcrossPages(t, tt.rejects)
		})
	}
}

func testDuplicatesAcrossPages(t *testing.T, rejects map[int]string) {
	f, srv := newFake(t, source.FlavorSuite, 9)
	want := wantLocators(source.FlavorSuite, 0, 9)
	f.mu.Lock()
	for i, ev := range rejects {
		f.events[i], want[i] = ev, ""
	}
	f.mu.Unlock()
	// Every follow-up page starts two events early, like a server repeating
	// the page boundary.
	f.setFault(func(n int, w http.ResponseWriter, r *http.Request) bool {
		q := r.URL.Query()
		tok := q.Get("pagingToken")
		if tok == "" || strings.Contains(tok, "x") {
			return false
		}
		var off int
		fmt.Sscanf(tok, "p%d", &off)
		f.mu.Lock()
		if off >= len(f.events) {
			f.mu.Unlock()
			return false // caught up: a plain empty page
		}
		start, end := max(off-2, 0), min(off+3, len(f.events))
		body := fmt.Sprintf(`{"pagingToken":"p%d","events":[%s]}`, end, strings.Join(f.events[start:end], ","))
		f.mu.Unlock()
		w.Write([]byte(body))
		return true
	})
	c := open(t, testConfig(source.FlavorSuite, srv.URL), "")
	evs, _ := readN(t, c, 9, 100, 10*time.Second)
	if got := locators(evs); !slices.Equal(got, want) {
		t.Errorf("locators = %v, want %v", got, want)
	}
	for i, ev := range evs {
		if raw, ok := rejects[i]; ok && (ev.Reject == "" || string(ev.Data) != raw) {
			t.Errorf("event %d = %+v, want the reject %s", i, ev, raw)
		}
	}
	if got, want := c.Duplicates(), uint64(4); got != want {
		t.Errorf("Duplicates() = %d, want %d", got, want)
	}
}

func TestDecodeEvents(t *testing.T) {
	for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
		t.Run(flavor, func(t *testing.T) {
			_, srv := newFake(t, flavor, 2)
			cfg := testConfig(flavor, srv.URL)
			c := open(t, cfg, "")
			evs, _ := readN(t, c, 2, 100, 10*time.Second)
			for i, ev := range evs {
				ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 1500 * time.Millisecond)
				want := source.Event{
					Type: []string{"policy.issue", "policy.quote.create"}[i], Timestamp: ts,
					Data: []byte(fmt.Sprintf(`{ "i" :%d,"nested": {"a": [1, 2 ,3]} }`, i)), Flavor: flavor, Seq: uint64(ts.UnixMilli()),
				}
				if flavor == source.FlavorSuite {
					want.Locator, want.RequestID, want.UserLocator, want.Tenant = fmt.Sprintf("L%04d", i), fmt.Sprintf("R%04d", i), fmt.Sprintf("U%d", i), testTenant
				} else {
					want.Locator, want.Username, want.TransactionID = fmt.Sprintf("E%04d", i), fmt.Sprintf("u%d", i), fmt.Sprintf("T%d", i)
					want.Tenant = "127.0.0.1" // the URL's host, when no tenant is configured
				}
				got := ev
				if string(got.Data) != string(want.Data) {
					t.Errorf("event %d data = %s, want the exact bytes %s", i, got.Data, want.Data)
				}
				got.Data, want.Data = nil, nil
				if got.Timestamp.Location() != time.UTC {
					t.Errorf("event %d timestamp not in UTC: %v", i, got.Timestamp)
				}
				if !got.Timestamp.Equal(want.Timestamp) {
					t.Errorf("event %d timestamp = %v, want %v", i, got.Timestamp, want.Timestamp)
				}
				got.Timestamp, want.Timestamp = time.Time{}, time.Time{}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("event %d = %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

// TestTailFollow reads to the end, then appends events and sees them arrive;
// the caught-up polls use the latest token, and Read returns one empty batch
// per catching up, not one per poll.
func TestTailFollow(t *testing.T) {
	f, srv := newFake(t, source.FlavorClassic, 4)
	f.tokenSeq = 1 // every answer carries a new token, even an empty page
	c := open(t, testConfig(source.FlavorClassic, srv.URL), "")
	readN(t, c, 4, 100, 10*time.Second)
	waitRequests(t, f, 5) // two pages, then at least three empty polls
	polls := len(f.requests())
	f.add(2)
	evs, batches := readN(t, c, 2, 100, 10*time.Second)
	if got, want := locators(evs), wantLocators(source.FlavorClassic, 4, 6); !slices.Equal(got, want) {
		t.Errorf("locators = %v, want %v", got, want)
	}
	empty := 0
	for _, b := range batches {
		if len(b.Events) == 0 {
			empty++
		}
	}
	if empty > 1 {
		t.Errorf("%d empty batches while tailing, want at most the one that says it caught up: %+v", empty, batches)
	}
	qs := f.requests()
	for i, q := range qs[2:polls] {
		if tok := q.Get("pagingToken"); !strings.HasPrefix(tok, "p4.") {
			t.Errorf("empty poll %d used token %q, want p4 with the latest suffix", i, tok)
		}
	}
	if a, b := qs[2].Get("pagingToken"), qs[polls-1].Get("pagingToken"); a == b {
		t.Errorf("caught-up polls all used token %q, want each poll to use the token the previous one returned", a)
	}
}

func TestEndReached(t *testing.T) {
	_, srv := newFake(t, source.FlavorSuite, 5)
	cfg := testConfig(source.FlavorSuite, srv.URL)
	cfg.End = time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	c := open(t, cfg, "")
	readN(t, c, 5, 100, 10*time.Second)
	_, err := c.Read(testenv.Context(t, 10*time.Second), 100)
	if !errors.Is(err, ErrEndReached) {
		t.Fatalf("Read at the end = %v, want ErrEndReached", err)
	}
}

// TestCloseStopsPrefetch closes a client that is polling and one whose
// prefetch buffer is full; both stop at once.
func TestCloseStopsPrefetch(t *testing.T) {
	for _, n := range []int{0, 50} {
		t.Run(fmt.Sprint(n, " events"), func(t *testing.T) {
			f, srv := newFake(t, source.FlavorSuite, n)
			cfg := testConfig(source.FlavorSuite, srv.URL)
			cfg.Prefetch = 2
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Open(context.Background(), ""); err != nil {
				t.Fatal(err)
			}
			waitRequests(t, f, 2)
			time.Sleep(50 * time.Millisecond)
			if n > 0 {
				// Prefetch 2 means two pages fetched ahead, no more.
				if got := len(f.requests()); got != 2 {
					t.Errorf("%d requests with nobody reading, want 2 (the prefetch bound)", got)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := c.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			before := len(f.requests())
			time.Sleep(60 * time.Millisecond)
			if after := len(f.requests()); after != before {
				t.Errorf("%d requests after Close, want none", after-before)
			}
		})
	}
}

func TestReadHonoursContext(t *testing.T) {
	_, srv := newFake(t, source.FlavorSuite, 0)
	c := open(t, testConfig(source.FlavorSuite, srv.URL), "")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// The first Read says it caught up (an empty batch), the next waits.
	if b, err := c.Read(ctx, 10); err != nil || len(b.Events) != 0 {
		t.Fatalf("first Read on an empty stream = %+v, %v; want the caught-up empty batch", b, err)
	}
	if _, err := c.Read(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read on an empty stream = %v, want the context's deadline", err)
	}
}

func TestTokenFileReread(t *testing.T) {
	f, srv := newFake(t, source.FlavorSuite, 6)
	f.pageSize = 3
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(source.FlavorSuite, srv.URL)
	cfg.Token, cfg.TokenFile = "", path
	cfg.Prefetch = 1
	c := open(t, cfg, "")
	readN(t, c, 3, 3, 10*time.Second)
	if err := os.WriteFile(path, []byte("second-token-longer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readN(t, c, 3, 3, 10*time.Second) // fetched ahead with the first token
	f.add(3)
	readN(t, c, 3, 3, 10*time.Second)
	f.mu.Lock()
	auths := slices.Compact(slices.Clone(f.auths))
	f.mu.Unlock()
	if want := []string{"Bearer first", "Bearer second-token-longer"}; !slices.Equal(auths, want) {
		t.Errorf("Authorization headers = %v, want %v", auths, want)
	}
}

func TestConfigValidate(t *testing.T) {
	good := testConfig(source.FlavorSuite, "http://127.0.0.1:1")
	tests := []struct {
		name string
		edit func(c *Config)
		want []string // substrings of the error; none: valid
	}{
		{"valid suite", func(c *Config) {}, nil},
		{"valid classic without tenant", func(c *Config) { c.Flavor, c.Tenant, c.Attributed = source.FlavorClassic, "", true }, nil},
		{"valid types only", func(c *Config) { c.Start, c.Types = time.Time{}, []string{"policy.issue"} }, nil},
		{"everything wrong", func(c *Config) {
			c.Flavor, c.URL, c.PageSize, c.Start = "modern", "", 5000, time.Time{}
		}, []string{`--api.flavor "modern"`, "--api.url is required", "--api.page-size 5000", "--api.start or --api.types"}},
		{"suite needs tenant, no attributed", func(c *Config) { c.Tenant, c.Attributed = "", true }, []string{"--api.tenant is required", "--api.attributed applies to the classic"}},
		{"several types need start", func(c *Config) { c.Start, c.Types = time.Time{}, []string{"a", "b"} }, []string{"filters one type per call"}},
		{"bad url", func(c *Config) { c.URL = "ftp://x" }, []string{"want an http:// or https:// URL"}},
		{"token and file", func(c *Config) { c.TokenFile = "/nonexistent/token" }, []string{"not both", "--api.token-file: open /nonexistent/token"}},
		{"end before start", func(c *Config) { c.End = c.Start.Add(-time.Hour) }, []string{"--api.end"}},
		{"enrich classic", func(c *Config) { c.Flavor, c.EnrichPolicyLocators = source.FlavorClassic, true }, []string{"--enrich.policy-locators applies to the suite"}},
		{"negative durations", func(c *Config) { c.PollInterval, c.Prefetch = -time.Second, -1 }, []string{"--api.poll-interval -1s", "--api.prefetch -1"}},
		{"suite tenant not a UUID", func(c *Config) { c.Tenant = "acme" }, []string{`--api.tenant "acme": the suite's tenant locator is a UUID`}},
		{"classic tenant is a label", func(c *Config) { c.Flavor, c.Tenant = source.FlavorClassic, "acme" }, nil},
		{"ranges", func(c *Config) { c.Prefetch, c.EnrichConcurrency, c.PageSize = 65, 65, 1001 }, []string{"--api.prefetch 65: want 1..64", "--enrich.concurrency 65: want 1..64", "--api.page-size 1001: want 1..1000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, missing %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Errorf("Validate() = %q shows the token", err)
			}
		})
	}
}

// TestFlagRanges: on the command line a zero is an error, not the default:
// every flag is validated against the range its help states.
func TestFlagRanges(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--api.url=https://api.example.com", "--api.tenant=" + testTenant, "--api.start=2024-01-01",
		"--api.page-size=0", "--api.poll-interval=0s", "--api.request-timeout=0s", "--api.prefetch=0", "--enrich.concurrency=0", "--enrich.cache-size=0"}); err != nil {
		t.Fatal(err)
	}
	err := c.Validate()
	for _, w := range []string{"--api.page-size 0: want 1..1000", "--api.poll-interval 0s: want a positive duration", "--api.request-timeout 0s: want a positive duration",
		"--api.prefetch 0: want 1..64", "--enrich.concurrency 0: want 1..64", "--enrich.cache-size 0: want at least 1"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v, want it to contain %q", err, w)
		}
	}
	for _, f := range []string{"api.page-size", "api.prefetch", "enrich.concurrency"} {
		if u := fs.Lookup(f).Usage; !strings.Contains(u, "1..") {
			t.Errorf("--%s's help %q does not state its range", f, u)
		}
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	var out strings.Builder
	fs.SetOutput(&out)
	c.RegisterFlags(fs)
	err := fs.Parse([]string{"--api.url=https://api.example.com", "--api.tenant=" + testTenant,
		"--api.start=1704067200000", "--api.end=2024-02-01T00:00:00.5Z", "--api.types=policy.issue,billing.invoice.generate",
		"--api.max-backoff=1s"}) // deprecated: accepted, ignored
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TRIBUTARY_API_TOKEN": "from-env", "TRIBUTARY_API_PAGE_SIZE": "250", "TRIBUTARY_API_URL": "https://ignored",
		"TRIBUTARY_API_MAX_MALFORMED": "5"}
	if err := cli.ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	tests := []struct{ name, got, want string }{
		{"flavor default", c.Flavor, source.FlavorSuite},
		{"url flag wins", c.URL, "https://api.example.com"},
		{"token from env", c.Token, "from-env"},
		{"page size from env", fmt.Sprint(c.PageSize), "250"},
		{"start ms", c.Start.Format(time.RFC3339Nano), "2024-01-01T00:00:00Z"},
		{"end RFC 3339", c.End.Format(time.RFC3339Nano), "2024-02-01T00:00:00.5Z"},
		{"types", strings.Join(c.Types, "|"), "policy.issue|billing.invoice.generate"},
		{"poll default", c.PollInterval.String(), "1s"},
		{"prefetch default", fmt.Sprint(c.Prefetch), "2"},
		{"no token in String", fmt.Sprint(strings.Contains(c.String(), "from-env")), "false"},
		{"deprecation warnings", fmt.Sprint(strings.Count(out.String(), "has no effect: the client makes one attempt per request and the pipeline retries, with backoff up to --pipeline.retry-max")), "2"},
		{"max-backoff hidden", fmt.Sprint(fs.Lookup("api.max-backoff").Hidden), "true"},
		{"max-malformed hidden", fmt.Sprint(fs.Lookup("api.max-malformed").Hidden), "true"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{"1704067200000", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"2024-01-01T01:00:00+01:00", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"2024-01-01T00:00:00.123Z", time.Date(2024, 1, 1, 0, 0, 0, 123e6, time.UTC), false},
		{"2024-01-01", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"", time.Time{}, false},
		{"yesterday", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if (err != nil) != tt.bad || !got.Equal(tt.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v (error %t)", tt.in, got, err, tt.want, tt.bad)
		}
	}
	before := time.Now().Add(-time.Millisecond)
	if got, err := ParseTime("now"); err != nil || got.Before(before) || got.After(time.Now()) {
		t.Errorf("ParseTime(now) = %v, %v; want the present", got, err)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		h    string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"0.5", 500 * time.Millisecond},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), time.Millisecond},
		{"86400", maxRetryAfter},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.h, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestParseErrorBody(t *testing.T) {
	tests := []struct {
		name, body string
		want       APIError
	}{
		{"classic", `{"apiErrorCode":"E42","httpErrorCode":400,"httpStatus":"Bad Request","message":"bad token","fieldErrors":{"pagingToken":"invalid"}}`,
			APIError{APICode: "E42", Message: "bad token", FieldErrors: `{"pagingToken":"invalid"}`}},
		{"suite", `{"httpStatus":"Unauthorized","httpErrorCode":401,"errorCode":"unauthorized","message":"no token"}`,
			APIError{APICode: "unauthorized", Message: "no token"}},
		{"generic", `{"error":"nope"}`, APIError{Message: "nope"}},
		{"html", "<html>gateway</html>\n", APIError{Message: "<html>gateway</html>"}},
		{"empty fieldErrors", `{"apiErrorCode":7,"message":"m","fieldErrors":{}}`, APIError{APICode: "7", Message: "m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got APIError
			parseErrorBody(&got, []byte(tt.body))
			if got != tt.want {
				t.Errorf("parseErrorBody = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestReadBatchesAreIndependent: batches share the page's array (Read
// compacts in place), yet appending to one batch cannot change the events a
// later Read returns from the same page.
func TestReadBatchesAreIndependent(t *testing.T) {
	_, srv := newFake(t, source.FlavorSuite, 10)
	cfg := testConfig(source.FlavorSuite, srv.URL)
	cfg.PageSize = 10
	c := open(t, cfg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	for len(got) < 10 {
		b, err := c.Read(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, locators(b.Events)...)
		_ = append(b.Events, source.Event{Locator: "intruder"}, source.Event{Locator: "intruder"})
	}
	if want := wantLocators(source.FlavorSuite, 0, 10); !slices.Equal(got, want) {
		t.Fatalf("locators = %v, want %v", got, want)
	}
}
