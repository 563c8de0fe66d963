package eventapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

// secretPagingToken is the paging token of the requests in
// TestGetJSONClassification; no error message may show it (nor the query).
const secretPagingToken = "tok-SECRETQ"

// TestGetJSONClassification makes one request per case against a server
// answering with one kind of failure, and checks how the error is
// classified and that it names the request without its query or token.
func TestGetJSONClassification(t *testing.T) {
	jsonErr := func(status int, code, msg string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { writeJSONError(w, status, code, msg) }
	}
	withRetryAfter := func(status int, after string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", after)
			writeJSONError(w, status, "busy", "slow down")
		}
	}
	body := func(b string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(b)) }
	}
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		tokenFile bool   // authenticate with --api.token-file instead of --api.token
		tok       string // the paging token of the request ("": the first call's filters)
		permanent bool
		after     time.Duration // fault.RetryAfter
		status    int           // of the *APIError in the chain; 0: none
		wantIn    []string
	}{
		{"429 Retry-After", withRetryAfter(429, "3"), false, secretPagingToken, false, 3 * time.Second, 429, []string{"HTTP 429 Too Many Requests", "slow down"}},
		{"429 without Retry-After", jsonErr(429, "busy", "slow down"), false, secretPagingToken, false, 0, 429, []string{"HTTP 429"}},
		{"503 Retry-After", withRetryAfter(503, "2"), false, secretPagingToken, false, 2 * time.Second, 503, []string{"HTTP 503 Service Unavailable"}},
		{"503", jsonErr(503, "unavailable", "down"), false, secretPagingToken, false, 0, 503, []string{"HTTP 503", "down"}},
		{"500", jsonErr(500, "internal", "boom"), false, secretPagingToken, false, 0, 500, []string{"HTTP 500 Internal Server Error (internal): boom"}},
		{"502 from a proxy", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(502)
			w.Write([]byte("<html>bad gateway</html>"))
		}, false, secretPagingToken, false, 0, 502, []string{"HTTP 502 Bad Gateway: <html>bad gateway</html>"}},
		{"408", jsonErr(408, "timeout", "too slow"), false, secretPagingToken, false, 0, 408, []string{"HTTP 408"}},
		{"401 literal token", jsonErr(401, "unauthorized", "token expired"), false, secretPagingToken, true, 0, 401,
			[]string{"HTTP 401 Unauthorized (unauthorized): token expired", "token rejected (HTTP 401)", "fix --api.token"}},
		{"403 literal token", jsonErr(403, "forbidden", "no access"), false, secretPagingToken, true, 0, 403, []string{"HTTP 403 Forbidden", "fix --api.token"}},
		{"401 token file", jsonErr(401, "unauthorized", "token expired"), true, secretPagingToken, false, 0, 401,
			[]string{"token expired", "token rejected (HTTP 401); re-reading --api.token-file"}},
		{"403 token file", jsonErr(403, "forbidden", "no access"), true, secretPagingToken, false, 0, 403, []string{"token rejected (HTTP 403); re-reading --api.token-file"}},
		{"400 to a paging token", jsonErr(400, "invalid_paging_token", "signature mismatch"), false, secretPagingToken, true, 0, 400,
			[]string{"HTTP 400 Bad Request (invalid_paging_token): signature mismatch", "paging token was refused", "tributary checkpoint reset --pipeline NAME"}},
		{"400 to the first call", jsonErr(400, "invalid_argument", "bad startTimestamp"), false, "", true, 0, 400, []string{"bad startTimestamp"}},
		{"404", jsonErr(404, "notFound", "no tenant"), false, secretPagingToken, true, 0, 404, []string{"HTTP 404 Not Found", "no tenant"}},
		{"422", jsonErr(422, "unprocessable", "nope"), false, secretPagingToken, true, 0, 422, []string{"HTTP 422"}},
		{"malformed JSON", body(`{"pagingToken":"p9","events":[{]}`), false, secretPagingToken, false, 0, 0, []string{"HTTP 200 with a malformed body"}},
		{"truncated JSON", body(`{"pagingToken":"p9","events":[{"locator":"L0003","requestId"`), false, secretPagingToken, false, 0, 0, []string{"malformed body", "unexpected end of JSON input"}},
		{"not JSON", body(`<html>maintenance</html>`), false, secretPagingToken, false, 0, 0, []string{"malformed body"}},
		{"no pagingToken", body(`{"events":[]}`), false, secretPagingToken, false, 0, 0, []string{"malformed body: no pagingToken"}},
		{"body cut short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "500")
			w.Write([]byte(`{"pagingToken":"p9","events":[`))
		}, false, secretPagingToken, false, 0, 0, []string{"HTTP 200, reading the body: unexpected EOF"}},
		{"connection closed", func(w http.ResponseWriter, r *http.Request) {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		}, false, secretPagingToken, false, 0, 0, []string{"EOF"}},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // the client gives up after its request timeout
		}, false, secretPagingToken, false, 0, 0, []string{"no answer within --api.request-timeout 200ms"}},
		{"connection refused", nil, false, secretPagingToken, false, 0, 0, []string{"connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu       sync.Mutex
				requests int
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				requests++
				mu.Unlock()
				tt.handler(w, r)
			}))
			t.Cleanup(srv.Close)
			if tt.handler == nil {
				srv.Close() // nothing listens on its address any more
			}
			cfg := testConfig(source.FlavorSuite, srv.URL)
			cfg.RequestTimeout = 200 * time.Millisecond
			if tt.tokenFile {
				cfg.Token, cfg.TokenFile = "", filepath.Join(t.TempDir(), "token")
				if err := os.WriteFile(cfg.TokenFile, []byte("secret-token\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			_, _, err = c.fetchPage(testenv.Context(t, 10*time.Second), tt.tok)
			if err == nil {
				t.Fatal("fetchPage succeeded, want an error")
			}
			if got := fault.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent(%v) = %t, want %t", err, got, tt.permanent)
			}
			if got := fault.RetryAfter(err); got != tt.after {
				t.Errorf("RetryAfter(%v) = %v, want %v", err, got, tt.after)
			}
			var ae *APIError
			got := 0
			if errors.As(err, &ae) {
				got = ae.Status
			}
			if got != tt.status {
				t.Errorf("status of %v = %d, want %d", err, got, tt.status)
			}
			if got, want := errors.Is(err, ErrMalformed), strings.Contains(tt.name, "JSON") || tt.name == "no pagingToken"; got != want {
				t.Errorf("errors.Is(%v, ErrMalformed) = %t, want %t", err, got, want)
			}
			if got, want := errors.Is(err, context.DeadlineExceeded), tt.name == "timeout"; got != want {
				t.Errorf("errors.Is(%v, context.DeadlineExceeded) = %t, want %t", err, got, want)
			}
			msg := err.Error()
			for _, s := range append([]string{"GET /event/" + testTenant + "/events/list"}, tt.wantIn...) {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not mention %q", msg, s)
				}
			}
			for _, s := range []string{"secret-token", secretPagingToken, "pagingToken=", "pageSize=", srv.URL} {
				if strings.Contains(msg, s) {
					t.Errorf("error %q shows %q", msg, s)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if tt.handler != nil && requests != 1 {
				t.Errorf("%d requests, want 1 (one attempt per call)", requests)
			}
		})
	}
}

// TestOneAttemptPerRead checks that a client facing a server that always
// fails makes one request per Read, each failure transient, and no request
// of its own in between.
func TestOneAttemptPerRead(t *testing.T) {
	f, srv := newFake(t, source.FlavorSuite, 3)
	f.setFault(func(n int, w http.ResponseWriter, r *http.Request) bool {
		w.Write([]byte(`<html>maintenance</html>`))
		return true
	})
	c := open(t, testConfig(source.FlavorSuite, srv.URL), "")
	ctx := testenv.Context(t, 10*time.Second)
	for i := range 3 {
		_, err := c.Read(ctx, 10)
		if err == nil || fault.IsPermanent(err) || !strings.Contains(err.Error(), "malformed body") {
			t.Fatalf("Read %d = %v, want a transient malformed-body error", i, err)
		}
		if got := len(f.requests()); got != i+1 {
			t.Fatalf("%d requests after %d failed Reads, want %d", got, i+1, i+1)
		}
	}
}

// TestPermanentErrors checks that a permanent error ends reading: Read
// returns it now and on every later call, with no further request.
func TestPermanentErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		from       source.Position
		wantInErr  []string
		wantStatus int
	}{
		{"401", 401, "", []string{"401", "Unauthorized", "token expired", "unauthorized"}, 401},
		{"403", 403, "", []string{"403", "Forbidden", "no access to events"}, 403},
		{"400 tampered token", 0, "pTAMPERED", []string{"400", "invalid paging token pTAMPERED", "invalidPagingToken", "checkpoint reset"}, 400},
		{"404", 404, "", []string{"404", "no tenant"}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFake(t, source.FlavorSuite, 3)
			if tt.status != 0 {
				f.setFault(func(n int, w http.ResponseWriter, r *http.Request) bool {
					msg := map[int]string{401: "token expired", 403: "no access to events", 404: "no tenant"}[tt.status]
					code := map[int]string{401: "unauthorized", 403: "forbidden", 404: "notFound"}[tt.status]
					writeJSONError(w, tt.status, code, msg)
					return true
				})
			}
			c := open(t, testConfig(source.FlavorSuite, srv.URL), tt.from)
			ctx := testenv.Context(t, 10*time.Second)
			_, err := c.Read(ctx, 100)
			if !fault.IsPermanent(err) {
				t.Fatalf("Read error = %v, want a permanent one", err)
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != tt.wantStatus {
				t.Fatalf("Read error = %v, want an *APIError with status %d", err, tt.wantStatus)
			}
			for _, s := range tt.wantInErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if _, err2 := c.Read(ctx, 100); err2 != err {
				t.Errorf("second Read error = %v, want the same permanent error", err2)
			}
			if got := len(f.requests()); got != 1 {
				t.Errorf("%d requests, want 1 (no retry of a permanent error)", got)
			}
		})
	}
}

// TestPrefetchFailureResumes fails one request of the fetcher (the page
// after failToken) and checks that Read first hands over every page fetched
// before it, then the error, and that the next Read fetches that page again:
// every event once, in order, and every page requested once but the failed
// one, twice.
func TestPrefetchFailureResumes(t *testing.T) {
	const n = 30 // ten pages of three
	tests := []struct {
		name      string
		from      source.Position
		failToken string // the request that fails once
		status    int    // its answer
		max       int    // Read's max
		wantFrom  int    // the first event read
		wantFirst int    // events read before the error
	}{
		{"page 5 fails", "", "p12", 500, 100, 0, 12},
		{"page 5 throttled, batches split pages", "", "p12", 429, 2, 0, 12},
		{"first page fails", "", "", 503, 100, 0, 0},
		{"first page of a mid-page resume fails", "skip=2;p9", "p9", 500, 100, 11, 0},
		{"last page fails", "", "p27", 500, 4, 0, 27},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFake(t, source.FlavorSuite, n)
			var failed atomic.Bool
			f.setFault(func(_ int, w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Query().Get("pagingToken") != tt.failToken || !failed.CompareAndSwap(false, true) {
					return false
				}
				writeJSONError(w, tt.status, "fault", "injected")
				return true
			})
			cfg := testConfig(source.FlavorSuite, srv.URL)
			cfg.Prefetch = 3
			c := open(t, cfg, tt.from)
			ctx := testenv.Context(t, 10*time.Second)
			var got []source.Event
			var errs []error
			for len(got) < n-tt.wantFrom {
				b, err := c.Read(ctx, tt.max)
				if err != nil {
					if fault.IsPermanent(err) {
						t.Fatalf("Read: %v", err)
					}
					if len(got) != tt.wantFirst {
						t.Errorf("error after %d events, want after %d", len(got), tt.wantFirst)
					}
					errs = append(errs, err)
					if len(errs) > 1 {
						t.Fatalf("Read failed again: %v", errs)
					}
					continue
				}
				got = append(got, b.Events...)
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), "injected") {
				t.Errorf("Read errors %v, want the injected one once", errs)
			}
			if got, want := locators(got), wantLocators(source.FlavorSuite, tt.wantFrom, n); !slices.Equal(got, want) {
				t.Errorf("locators = %v, want %v", got, want)
			}
			if d := c.Duplicates(); d != 0 {
				t.Errorf("Duplicates() = %d, want 0 (nothing fetched twice but the failed page)", d)
			}
			// Every page up to the last, requested once; the failed one twice.
			count := map[string]int{}
			for _, q := range f.requests() {
				if tok := q.Get("pagingToken"); tok != fmt.Sprintf("p%d", n) {
					count[tok]++
				}
			}
			for tok, k := range count {
				want := 1
				if tok == tt.failToken {
					want = 2
				}
				if k != want {
					t.Errorf("page after %q requested %d times, want %d", tok, k, want)
				}
			}
		})
	}
}

// TestTransientFailureOnEveryKind runs a whole small stream through each kind
// of transient failure (on the second and third request) and checks the
// error Read returns, that the next Read resumes with the same token, and
// the exact result.
func TestTransientFailureOnEveryKind(t *testing.T) {
	tests := []struct {
		name  string
		fault func(w http.ResponseWriter, r *http.Request)
		want  string // in the error
		after time.Duration
	}{
		{"500", func(w http.ResponseWriter, r *http.Request) { writeJSONError(w, 500, "internal", "boom") }, "HTTP 500", 0},
		{"429", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
		}, "HTTP 429", time.Second},
		{"malformed JSON", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"pagingToken":"p9","events":[{]}`))
		}, "malformed body", 0},
		{"body cut short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "500")
			w.Write([]byte(`{"pagingToken":"p9","events":[`))
		}, "unexpected EOF", 0},
		{"connection closed", func(w http.ResponseWriter, r *http.Request) {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		}, "GET /event/", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFake(t, source.FlavorSuite, 6)
			f.setFault(func(n int, w http.ResponseWriter, r *http.Request) bool {
				if n == 1 || n == 2 {
					tt.fault(w, r)
					return true
				}
				return false
			})
			c := open(t, testConfig(source.FlavorSuite, srv.URL), "")
			evs, _, errs := readNErrs(t, c, 6, 100, 15*time.Second)
			if got, want := locators(evs), wantLocators(source.FlavorSuite, 0, 6); !slices.Equal(got, want) {
				t.Errorf("locators = %v, want %v", got, want)
			}
			// Go's transport itself retries a GET whose reused connection was
			// closed, so that case may reach the client once only.
			if len(errs) < 1 || len(errs) > 2 {
				t.Fatalf("Read errors %v, want one or two", errs)
			}
			for _, err := range errs {
				if !strings.Contains(err.Error(), tt.want) || fault.RetryAfter(err) != tt.after {
					t.Errorf("Read error %v (RetryAfter %v), want one mentioning %q with RetryAfter %v", err, fault.RetryAfter(err), tt.want, tt.after)
				}
			}
			qs := f.requests()
			for i := 1; i <= 2; i++ {
				if got := qs[i].Get("pagingToken"); got != "p3" {
					t.Errorf("request %d pagingToken = %q, want the same p3 until it succeeds", i, got)
				}
			}
		})
	}
}

// TestTokenFileHealsAfter401 reads from the emulator (bearer auth) with a
// token file holding a wrong token: every Read fails transiently with a 401
// saying the file is re-read, until the file holds the right token; then the
// stream flows without a new client.
func TestTokenFileHealsAfter401(t *testing.T) {
	s, srv := startEmulator(t, source.FlavorSuite, 300)
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("expired-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := emulatorConfig(s, srv, 100)
	cfg.Token, cfg.TokenFile = "", path
	c := open(t, cfg, "")
	ctx := testenv.Context(t, 20*time.Second)
	for i := range 2 {
		_, err := c.Read(ctx, 1000)
		var ae *APIError
		if err == nil || fault.IsPermanent(err) || !errors.As(err, &ae) || ae.Status != 401 ||
			!strings.Contains(err.Error(), "token rejected (HTTP 401); re-reading --api.token-file "+path+" on every attempt") {
			t.Fatalf("Read %d with a wrong token in the file = %v, want a transient 401 saying the file is re-read", i, err)
		}
	}
	if err := os.WriteFile(path, []byte(emuToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _ := readN(t, c, s.Len(), 1000, 20*time.Second)
	compareEvents(t, got, s.Events(), false)
}

// TestLiteralToken401IsPermanent: with --api.token, a 401 stops at once.
func TestLiteralToken401IsPermanent(t *testing.T) {
	s, srv := startEmulator(t, source.FlavorSuite, 10)
	cfg := emulatorConfig(s, srv, 100)
	cfg.Token = "not-the-token"
	c := open(t, cfg, "")
	_, err := c.Read(testenv.Context(t, 10*time.Second), 10)
	var ae *APIError
	if !fault.IsPermanent(err) || !errors.As(err, &ae) || ae.Status != 401 || !strings.Contains(err.Error(), "missing or invalid bearer token") {
		t.Fatalf("Read = %v, want a permanent 401", err)
	}
	if strings.Contains(err.Error(), "not-the-token") {
		t.Errorf("error %q shows the token", err)
	}
}

// TestTokenFileRereadAfterRefusal: a refused token makes the next attempt
// read the file again even when its size and time look unchanged.
func TestTokenFileRereadAfterRefusal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	write := func(tok string, at time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	write("aaaa", at)
	cfg := testConfig(source.FlavorSuite, "http://127.0.0.1:1")
	cfg.Token, cfg.TokenFile = "", path
	d, err := newDoer(cfg.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	write("bbbb", at) // same size, same time
	steps := []struct {
		refuse bool
		want   string
	}{{false, "aaaa"}, {true, "bbbb"}, {false, "bbbb"}}
	for i, st := range steps {
		if st.refuse {
			d.refused()
		}
		if got, err := d.token(); err != nil || got != st.want {
			t.Errorf("step %d: token() = %q, %v; want %q", i, got, err, st.want)
		}
	}
}
