package emulator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// newTestServer starts an emulator behind httptest; both close at the test's end.
func newTestServer(t testing.TB, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, hs
}

// get performs a GET and returns the status and body.
func get(t testing.TB, hs *httptest.Server, path string, q url.Values, token string) (int, []byte) {
	t.Helper()
	u := hs.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", u, err)
	}
	return resp.StatusCode, b
}

// page is a decoded page of either flavor.
type page struct {
	PagingToken string      `json:"pagingToken"`
	Events      []pageEvent `json:"events"`
}

type pageEvent struct {
	Locator     string          `json:"locator"`
	ID          string          `json:"id"`
	RequestID   string          `json:"requestId"`
	UserLocator string          `json:"userLocator"`
	Username    string          `json:"username"`
	Timestamp   string          `json:"timestamp"`
	Type        string          `json:"type"`
	Data        json.RawMessage `json:"data"`
}

func (e pageEvent) key() string {
	if e.ID != "" {
		return e.ID
	}
	return e.Locator
}

// listPath returns the paged endpoint of s's flavor.
func listPath(s *Server) string {
	if s.cfg.Flavor == FlavorClassic {
		return "/eventstream/events"
	}
	return "/event/" + s.cfg.Tenant + "/events/list"
}

// fetchPage GETs one page and decodes it, failing the test on a non-200.
func fetchPage(t testing.TB, s *Server, hs *httptest.Server, q url.Values) page {
	t.Helper()
	code, body := get(t, hs, listPath(s), q, s.cfg.Token)
	if code != http.StatusOK {
		t.Fatalf("GET %s?%s = %d %s", listPath(s), q.Encode(), code, body)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode page: %v: %s", err, body)
	}
	return p
}

// startQuery is a first call that selects everything.
func startQuery(s *Server) url.Values {
	if s.cfg.Flavor == FlavorClassic {
		return url.Values{"startTimestamp": {"0"}}
	}
	return url.Values{"startTimestamp": {"2000-01-01T00:00:00.000Z"}}
}

// readAll pages through the stream from q until a page comes back empty and
// returns the events and the last token.
func readAll(t testing.TB, s *Server, hs *httptest.Server, q url.Values) ([]pageEvent, string) {
	t.Helper()
	var out []pageEvent
	for {
		p := fetchPage(t, s, hs, q)
		out = append(out, p.Events...)
		q = url.Values{"pagingToken": {p.PagingToken}}
		if len(p.Events) == 0 {
			return out, p.PagingToken
		}
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
