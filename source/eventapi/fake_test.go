package eventapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/source"
)

// fakeStream is a small event-stream server for the error paths the emulator
// does not script exactly: it serves events in pages with tokens "p<offset>",
// enforces the token-alone rule and records every query. A fault hook can
// answer any request instead.
type fakeStream struct {
	flavor   string
	tenant   string
	pageSize int

	mu       sync.Mutex
	events   []string // JSON objects, in order
	queries  []url.Values
	paths    []string
	auths    []string
	fault    func(n int, w http.ResponseWriter, r *http.Request) bool
	tokenSeq int // when > 0, tokens carry a changing suffix like a real server
}

const testTenant = "6f1c1f0e-8d1a-4a37-9a59-1f1e1f1e1f1e"

func newFake(t *testing.T, flavor string, n int) (*fakeStream, *httptest.Server) {
	t.Helper()
	f := &fakeStream{flavor: flavor, tenant: testTenant, pageSize: 3}
	f.add(n)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// fakeEvent returns the JSON of event i of flavor; its data has unusual
// spacing so that tests see whether the bytes pass through untouched.
func fakeEvent(flavor string, i int) string {
	ts := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 1500 * time.Millisecond)
	typ := "policy.issue"
	if i%2 == 1 {
		typ = "policy.quote.create"
	}
	data := fmt.Sprintf(`{ "i" :%d,"nested": {"a": [1, 2 ,3]} }`, i)
	if flavor == source.FlavorClassic {
		stamp := fmt.Sprintf("%q", strconv.FormatInt(ts.UnixMilli(), 10))
		if i%2 == 0 {
			stamp = strconv.FormatInt(ts.UnixMilli(), 10) // a number, as some servers send
		}
		return fmt.Sprintf(`{"id":"E%04d","timestamp":%s,"type":%q,"data":%s,"username":"u%d","transactionId":"T%d"}`, i, stamp, typ, data, i, i)
	}
	return fmt.Sprintf(`{"locator":"L%04d","requestId":"R%04d","userLocator":"U%d","timestamp":%q,"type":%q,"data":%s}`,
		i, i, i, ts.Format("2006-01-02T15:04:05.000Z07:00"), typ, data)
}

func (f *fakeStream) add(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.events = append(f.events, fakeEvent(f.flavor, len(f.events)))
	}
}

func (f *fakeStream) requests() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.queries...)
}

// authPath returns the Authorization header and path of request i.
func (f *fakeStream) authPath(i int) (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auths[i], f.paths[i]
}

func (f *fakeStream) setFault(h func(n int, w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.fault = h
	f.mu.Unlock()
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"apiErrorCode":%q,"httpErrorCode":%d,"httpStatus":%q,"message":%q,"fieldErrors":{}}`, code, status, http.StatusText(status), msg)
}

func (f *fakeStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	n := len(f.queries)
	f.queries = append(f.queries, r.URL.Query())
	f.paths = append(f.paths, r.URL.Path)
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	fault := f.fault
	f.mu.Unlock()
	if fault != nil && fault(n, w, r) {
		return
	}
	want := "/event/" + f.tenant + "/events/list"
	if f.flavor == source.FlavorClassic {
		want = "/eventstream/events"
		if r.URL.Path == "/eventstream/attributedEvents" {
			want = r.URL.Path
		}
	}
	if r.URL.Path != want {
		writeJSONError(w, http.StatusNotFound, "notFound", "no such path "+r.URL.Path)
		return
	}
	q := r.URL.Query()
	off := 0
	if tok := q.Get("pagingToken"); tok != "" {
		if len(q) != 1 {
			writeJSONError(w, http.StatusBadRequest, "badRequest", "pagingToken cannot be combined with other arguments")
			return
		}
		num, _, _ := strings.Cut(strings.TrimPrefix(tok, "p"), ".")
		v, err := strconv.Atoi(num)
		if !strings.HasPrefix(tok, "p") || err != nil || v < 0 {
			writeJSONError(w, http.StatusBadRequest, "invalidPagingToken", "invalid paging token "+tok)
			return
		}
		off = v
	} else if q.Get("startTimestamp") == "" && q.Get("type") == "" && q.Get("eventType") == "" {
		writeJSONError(w, http.StatusBadRequest, "badRequest", "a filter is required")
		return
	}
	f.mu.Lock()
	end := min(off+f.pageSize, len(f.events))
	off = min(off, end)
	evs := strings.Join(f.events[off:end], ",")
	tok := "p" + strconv.Itoa(end)
	if f.tokenSeq > 0 {
		f.tokenSeq++
		tok += "." + strconv.Itoa(f.tokenSeq)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"pagingToken":%q,"events":[%s]}`, tok, evs)
}

// testConfig returns a Config for srv that polls often.
func testConfig(flavor, u string) Config {
	c := Config{
		Flavor:         flavor,
		URL:            u,
		Tenant:         testTenant,
		Token:          "secret-token",
		Start:          time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		PageSize:       3,
		PollInterval:   20 * time.Millisecond,
		RequestTimeout: 2 * time.Second,
	}
	if flavor == source.FlavorClassic {
		c.Tenant = ""
	}
	return c
}

// wantLocators returns the locators of events [from, to) of flavor.
func wantLocators(flavor string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		if flavor == source.FlavorClassic {
			out = append(out, fmt.Sprintf("E%04d", i))
		} else {
			out = append(out, fmt.Sprintf("L%04d", i))
		}
	}
	return out
}

func locators(evs []source.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Locator
	}
	return out
}

// mustJSON compacts s, for comparisons that ignore spacing.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
