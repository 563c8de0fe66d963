package emulator

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// outcome classifies one answer: a status code, "invalid-json", "reset" or "ok".
func outcome(t *testing.T, client *http.Client, u string) (string, *http.Response) {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset") {
			return "reset", nil
		}
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "reset", nil
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Status, resp
	}
	if !json.Valid(body) {
		return "invalid-json", resp
	}
	return "ok", resp
}

func TestFaultsEach(t *testing.T) {
	tests := []struct {
		name  string
		f     FaultConfig
		check func(t *testing.T, got string, resp *http.Response)
	}{
		{"error", FaultConfig{ErrorRate: 1}, func(t *testing.T, got string, _ *http.Response) {
			if got != "500 Internal Server Error" && got != "503 Service Unavailable" {
				t.Errorf("got %s, want 500 or 503", got)
			}
		}},
		{"throttle", FaultConfig{ThrottleRate: 1, RetryAfter: 2 * time.Second}, func(t *testing.T, got string, resp *http.Response) {
			if got != "429 Too Many Requests" || resp.Header.Get("Retry-After") != "2" {
				t.Errorf("got %s Retry-After %q, want 429 with Retry-After 2", got, resp.Header.Get("Retry-After"))
			}
		}},
		{"truncate", FaultConfig{TruncateRate: 1}, func(t *testing.T, got string, _ *http.Response) {
			if got != "invalid-json" {
				t.Errorf("got %s, want a cut JSON body", got)
			}
		}},
		{"malformed", FaultConfig{MalformedRate: 1}, func(t *testing.T, got string, _ *http.Response) {
			if got != "invalid-json" {
				t.Errorf("got %s, want an invalid JSON body", got)
			}
		}},
		{"reset", FaultConfig{ResetRate: 1}, func(t *testing.T, got string, _ *http.Response) {
			if got != "reset" {
				t.Errorf("got %s, want a reset connection", got)
			}
		}},
		{"off", FaultConfig{}, func(t *testing.T, got string, _ *http.Response) {
			if got != "ok" {
				t.Errorf("got %s with faults off", got)
			}
		}},
	}
	for _, fl := range flavors {
		for _, tt := range tests {
			t.Run(fl+"/"+tt.name, func(t *testing.T) {
				s, hs := newTestServer(t, Config{Flavor: fl, Seed: 41, Events: 200})
				s.SetFaults(tt.f)
				u := hs.URL + listPath(s) + "?" + startQuery(s).Encode()
				codes := map[string]int{}
				for i := 0; i < 10; i++ {
					got, resp := outcome(t, hs.Client(), u)
					codes[got]++
					tt.check(t, got, resp)
				}
				if tt.name == "error" && (codes["500 Internal Server Error"] == 0 || codes["503 Service Unavailable"] == 0) {
					t.Errorf("error fault gave %v, want both 500 and 503", codes)
				}
			})
		}
	}
}

func TestFaultLatency(t *testing.T) {
	const latency = 400 * time.Millisecond
	s, hs := newTestServer(t, Config{Seed: 42, Events: 20, Faults: FaultConfig{Latency: latency}})
	start := time.Now()
	fetchPage(t, s, hs, startQuery(s))
	if d := time.Since(start); d < latency {
		t.Errorf("answer after %s, want at least the %s latency", d, latency)
	}
	s.SetFaults(FaultConfig{})
	start = time.Now()
	fetchPage(t, s, hs, startQuery(s))
	if d := time.Since(start); d >= latency {
		t.Errorf("answer after %s with latency switched off", d)
	}
}

// Duplicates across page boundaries: every event still arrives, some twice.
func TestFaultDuplicates(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 43, Events: 1000, Faults: FaultConfig{DuplicateRate: 1}})
			q := startQuery(s)
			q.Set("pageSize", "50")
			// With every page repeating the tail of the previous one, the
			// end shows as a page without new events.
			var got []pageEvent
			known := map[string]bool{}
			for calls := 0; ; calls++ {
				if calls > 200 {
					t.Fatal("paging did not reach the end in 200 calls")
				}
				p := fetchPage(t, s, hs, q)
				got = append(got, p.Events...)
				q = url.Values{"pagingToken": {p.PagingToken}}
				fresh := 0
				for _, e := range p.Events {
					if !known[e.key()] {
						known[e.key()] = true
						fresh++
					}
				}
				if fresh == 0 {
					break
				}
			}
			want := s.Events()
			if len(got) <= len(want) {
				t.Fatalf("%d events with duplicates on, want more than %d", len(got), len(want))
			}
			seen := map[string]bool{}
			var uniq []string
			for _, e := range got {
				if !seen[e.key()] {
					seen[e.key()] = true
					uniq = append(uniq, e.key())
				}
			}
			if len(uniq) != len(want) {
				t.Fatalf("%d distinct events, want %d", len(uniq), len(want))
			}
			for i, e := range want {
				if uniq[i] != e.Locator {
					t.Fatalf("distinct event %d is %s, want %s", i, uniq[i], e.Locator)
				}
			}
		})
	}
}

// The same seed and request sequence give the same faults; another seed differs.
func TestFaultsReproducible(t *testing.T) {
	f := FaultConfig{ErrorRate: 0.15, ThrottleRate: 0.15, TruncateRate: 0.1, MalformedRate: 0.1, ResetRate: 0.1}
	run := func(seed int64) string {
		s, hs := newTestServer(t, Config{Seed: seed, Events: 50, Faults: f})
		u := hs.URL + listPath(s) + "?" + url.Values{"startTimestamp": {"2000-01-01T00:00:00Z"}}.Encode()
		// A fresh connection per request: net/http retries a GET reset on a
		// reused connection by itself, which would draw an extra fault.
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		defer client.CloseIdleConnections()
		var out []string
		for i := 0; i < 60; i++ {
			got, _ := outcome(t, client, u)
			out = append(out, got)
		}
		return strings.Join(out, ",")
	}
	a, b, c := run(7), run(7), run(8)
	if a != b {
		t.Errorf("same seed, different faults:\n%s\n%s", a, b)
	}
	if a == c {
		t.Errorf("different seeds, same faults: %s", a)
	}
	for _, want := range []string{"ok", "reset", "invalid-json", "429 Too Many Requests"} {
		if !strings.Contains(a, want) {
			t.Errorf("60 requests at these rates never gave %s: %s", want, a)
		}
	}
}
