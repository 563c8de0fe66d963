package emulator

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// receiver is a webhook endpoint that records every delivery attempt and
// answers with respond(attempt number of that event).
type receiver struct {
	mu       sync.Mutex
	attempts map[string][]time.Time // event locator → attempt times
	bodies   map[string][]byte
	headers  map[string]http.Header
	respond  func(w http.ResponseWriter, attempt int)
	srv      *httptest.Server
}

func newReceiver(t *testing.T, respond func(w http.ResponseWriter, attempt int)) *receiver {
	rc := &receiver{attempts: map[string][]time.Time{}, bodies: map[string][]byte{}, headers: map[string]http.Header{}, respond: respond}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var e pageEvent
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("webhook body is not JSON: %v: %s", err, body)
		}
		rc.mu.Lock()
		rc.attempts[e.key()] = append(rc.attempts[e.key()], time.Now())
		n := len(rc.attempts[e.key()])
		rc.bodies[e.key()] = body
		rc.headers[e.key()] = r.Header.Clone()
		rc.mu.Unlock()
		rc.respond(w, n)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) count(loc string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.attempts[loc])
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// createWebhook registers a webhook through the API and returns its locator.
func createWebhook(t *testing.T, s *Server, hs *httptest.Server, req map[string]any) string {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := hs.Client().Post(hs.URL+"/event/"+s.Tenant()+"/webhooks", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create webhook: %d %s", resp.StatusCode, body)
	}
	var wh webhookJSON
	if err := json.Unmarshal(body, &wh); err != nil {
		t.Fatal(err)
	}
	return wh.Locator
}

func hookRequest(url string, types []string, fh map[string]any) map[string]any {
	return map[string]any{
		"name": "test", "enabled": true, "eventTypes": types,
		"endpoint":        map[string]any{"url": url, "secret": "k3y", "headers": map[string][]string{"X-Env": {"test"}}},
		"failureHandling": fh,
	}
}

func fh(typ string, interval, attempts int, triggers []string, divert, suspend bool) map[string]any {
	return map[string]any{
		"alertEndpoint": map[string]any{"url": ""}, "triggers": triggers, "divert": divert, "suspend": suspend,
		"retryStrategy": map[string]any{"type": typ, "interval": interval, "attempts": attempts},
	}
}

// firstOfType appends events until one of type typ arrives and returns it.
func firstOfType(t *testing.T, s *Server, typ string) Event {
	t.Helper()
	for i := 0; i < 200; i++ {
		for _, e := range s.Append(20) {
			if e.Type == typ {
				return e
			}
		}
	}
	t.Fatalf("no %s event generated", typ)
	return Event{}
}

func TestWebhookDeliveryAndSignature(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 31, Events: 100})
			rc := newReceiver(t, func(w http.ResponseWriter, _ int) {})
			typ := s.Events()[0].Type
			createWebhook(t, s, hs, hookRequest(rc.srv.URL, []string{typ}, fh("linear", 5, 3, nil, true, false)))
			e := firstOfType(t, s, typ)
			waitFor(t, "delivery", func() bool { return rc.count(e.Locator) == 1 })
			rc.mu.Lock()
			body, hdr := rc.bodies[e.Locator], rc.headers[e.Locator]
			rc.mu.Unlock()
			m := hmac.New(sha256.New, []byte("k3y"))
			m.Write(body)
			if got, want := hdr.Get(DefaultSignatureHeader), "sha256="+hex.EncodeToString(m.Sum(nil)); got != want {
				t.Errorf("signature %q, want %q", got, want)
			}
			if hdr.Get("X-Env") != "test" {
				t.Errorf("configured header missing: %v", hdr)
			}
			var got pageEvent
			json.Unmarshal(body, &got)
			if got.key() != e.Locator || got.Type != e.Type || !bytes.Equal(got.Data, e.Data) {
				t.Errorf("delivered %s, want event %s", body, e.Locator)
			}
			if fl == FlavorClassic {
				var extra struct{ Username, TransactionID string }
				json.Unmarshal(body, &extra)
				if extra.Username != e.Username || extra.TransactionID != e.TransactionID || extra.TransactionID == "" {
					t.Errorf("classic webhook body %s lacks username/transactionId %q/%q", body, e.Username, e.TransactionID)
				}
			}
			// Events of other types are not delivered.
			rc.mu.Lock()
			for loc := range rc.attempts {
				for _, x := range s.Events() {
					if x.Locator == loc && x.Type != typ {
						t.Errorf("event %s of type %s delivered to a %s webhook", loc, x.Type, typ)
					}
				}
			}
			rc.mu.Unlock()
		})
	}
}

func TestWebhookRetryStrategies(t *testing.T) {
	tests := []struct {
		name     string
		strategy string
		failures int // failed answers before success
		attempts int
		want     int // deliveries
		wantGaps []time.Duration
		diverted bool
	}{
		{"linear recovers", "linear", 2, 3, 3, []time.Duration{20 * time.Millisecond, 40 * time.Millisecond}, false},
		{"exponential recovers", "exponential", 3, 4, 4, []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}, false},
		{"exhausted then diverted", "linear", 100, 3, 3, nil, true},
		{"one attempt", "linear", 100, 1, 1, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Seed: 32, Events: 10})
			rc := newReceiver(t, func(w http.ResponseWriter, n int) {
				if n <= tt.failures {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			})
			wl := createWebhook(t, s, hs, hookRequest(rc.srv.URL, []string{"policy.quote.create"}, fh(tt.strategy, 20, tt.attempts, []string{"5xx"}, true, false)))
			e := firstOfType(t, s, "policy.quote.create")
			waitFor(t, "attempts", func() bool { return rc.count(e.Locator) >= tt.want })
			time.Sleep(150 * time.Millisecond) // no further attempt may come
			if got := rc.count(e.Locator); got != tt.want {
				t.Errorf("%d deliveries, want %d", got, tt.want)
			}
			rc.mu.Lock()
			times := rc.attempts[e.Locator]
			rc.mu.Unlock()
			for i, gap := range tt.wantGaps {
				if got := times[i+1].Sub(times[i]); got < gap {
					t.Errorf("gap before retry %d: %s, want at least %s", i+1, got, gap)
				}
			}
			code, body := get(t, hs, "/event/"+s.Tenant()+"/webhooks/"+wl+"/diverted", nil, "")
			var div []divertedJSON
			json.Unmarshal(body, &div)
			if code != http.StatusOK || (len(div) > 0) != tt.diverted {
				t.Fatalf("diverted: %d %s, want diverted=%v", code, body, tt.diverted)
			}
			if tt.diverted && (div[0].EventLocator != e.Locator || div[0].FailureTrigger != "503" || div[0].RequestLocator != e.RequestID) {
				t.Errorf("diverted entry %+v, want event %s trigger 503", div[0], e.Locator)
			}
		})
	}
}

func TestWebhookTriggers(t *testing.T) {
	slow := func(w http.ResponseWriter, _ int) { time.Sleep(300 * time.Millisecond) }
	tests := []struct {
		name        string
		respond     func(http.ResponseWriter, int)
		triggers    []string
		want        int
		wantTrigger string // "" when nothing is diverted
	}{
		{"503 not a trigger", func(w http.ResponseWriter, _ int) { w.WriteHeader(503) }, []string{"4xx"}, 1, ""},
		{"404 as a code", func(w http.ResponseWriter, _ int) { w.WriteHeader(404) }, []string{"404"}, 2, "404"},
		{"404 as 4xx", func(w http.ResponseWriter, _ int) { w.WriteHeader(404) }, []string{"4xx"}, 2, "404"},
		{"timeout", slow, []string{"timeout"}, 2, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Seed: 33, Events: 10, WebhookTimeout: 100 * time.Millisecond})
			rc := newReceiver(t, tt.respond)
			wl := createWebhook(t, s, hs, hookRequest(rc.srv.URL, []string{"policy.quote.create"}, fh("linear", 5, 2, tt.triggers, true, false)))
			e := firstOfType(t, s, "policy.quote.create")
			waitFor(t, "attempts", func() bool { return rc.count(e.Locator) >= tt.want })
			time.Sleep(400 * time.Millisecond)
			if got := rc.count(e.Locator); got != tt.want {
				t.Errorf("%d deliveries, want %d", got, tt.want)
			}
			_, body := get(t, hs, "/event/"+s.Tenant()+"/webhooks/"+wl+"/diverted", nil, "")
			var div []divertedJSON
			json.Unmarshal(body, &div)
			gotTrigger := ""
			if len(div) > 0 {
				gotTrigger = div[0].FailureTrigger
			}
			if gotTrigger != tt.wantTrigger {
				t.Errorf("diverted trigger %q, want %q (%s)", gotTrigger, tt.wantTrigger, body)
			}
		})
	}
}

// Diverted events: get, resend (removes on success), delete; suspension.
func TestWebhookDivertedLifecycleAndSuspend(t *testing.T) {
	s, hs := newTestServer(t, Config{Seed: 34, Events: 10})
	var mu sync.Mutex
	healthy := false
	rc := newReceiver(t, func(w http.ResponseWriter, _ int) {
		mu.Lock()
		defer mu.Unlock()
		if !healthy {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	preloaded := s.Len() // appended before the webhook existed: never delivered
	wl := createWebhook(t, s, hs, hookRequest(rc.srv.URL, []string{"policy.quote.create"}, fh("linear", 1, 1, []string{"5xx"}, true, true)))
	base := "/event/" + s.Tenant() + "/webhooks/" + wl
	e := firstOfType(t, s, "policy.quote.create")
	waitFor(t, "diversion", func() bool {
		_, body := get(t, hs, base+"/diverted", nil, "")
		return bytes.Contains(body, []byte(e.Locator))
	})
	// Suspended: later events wait.
	_, body := get(t, hs, base, nil, "")
	var wh webhookJSON
	json.Unmarshal(body, &wh)
	if !wh.Suspended || wh.SuspendedAt == isoMS(0) {
		t.Fatalf("webhook not suspended after a failure with suspend: %s", body)
	}
	e2 := firstOfType(t, s, "policy.quote.create")
	time.Sleep(100 * time.Millisecond)
	if n := rc.count(e2.Locator); n != 0 {
		t.Fatalf("suspended webhook delivered %d times", n)
	}
	mu.Lock()
	healthy = true
	mu.Unlock()
	if code, body := do(t, hs, http.MethodGet, base+"/diverted/"+e.Locator); code != http.StatusOK || !bytes.Contains(body, []byte(`"failureTrigger":"500"`)) {
		t.Fatalf("get diverted: %d %s", code, body)
	}
	if code, body := do(t, hs, http.MethodPost, base+"/diverted/"+e.Locator+"/resend"); code != http.StatusOK {
		t.Fatalf("resend: %d %s", code, body)
	}
	if rc.count(e.Locator) != 2 {
		t.Errorf("resend delivered %d times in all, want 2", rc.count(e.Locator))
	}
	if code, _ := do(t, hs, http.MethodGet, base+"/diverted/"+e.Locator); code != http.StatusNotFound {
		t.Errorf("resent event still diverted: %d", code)
	}
	if code, _ := do(t, hs, http.MethodPatch, base+"/unsuspend"); code != http.StatusNoContent {
		t.Fatalf("unsuspend: %d", code)
	}
	waitFor(t, "delivery after unsuspend", func() bool { return rc.count(e2.Locator) == 1 })
	// Every queued event (e2's batch may hold more) is delivered before the
	// receiver fails again.
	waitFor(t, "the queue to drain", func() bool {
		for _, x := range s.Events()[preloaded:] {
			if x.Type == "policy.quote.create" && rc.count(x.Locator) == 0 {
				return false
			}
		}
		return true
	})
	// Delete a diverted event: make one more fail.
	mu.Lock()
	healthy = false
	mu.Unlock()
	e3 := firstOfType(t, s, "policy.quote.create")
	waitFor(t, "second diversion", func() bool {
		code, _ := do(t, hs, http.MethodGet, base+"/diverted/"+e3.Locator)
		return code == http.StatusOK
	})
	if code, _ := do(t, hs, http.MethodDelete, base+"/diverted/"+e3.Locator); code != http.StatusOK {
		t.Fatalf("delete diverted: %d", code)
	}
	if code, _ := do(t, hs, http.MethodGet, base+"/diverted/"+e3.Locator); code != http.StatusNotFound {
		t.Errorf("deleted diverted event still there: %d", code)
	}
	if code, _ := do(t, hs, http.MethodDelete, base); code != http.StatusNoContent {
		t.Fatalf("delete webhook: %d", code)
	}
	if code, _ := do(t, hs, http.MethodGet, base); code != http.StatusNotFound {
		t.Errorf("deleted webhook still there: %d", code)
	}
}

func TestWebhookCreateValidation(t *testing.T) {
	s, hs := newTestServer(t, Config{Seed: 35})
	tests := []struct {
		name string
		req  map[string]any
		want int
	}{
		{"ok", hookRequest("http://127.0.0.1:1/", []string{"x"}, fh("linear", 1, 3, nil, false, false)), http.StatusOK},
		{"attempts 0 means default", hookRequest("http://127.0.0.1:1/", []string{"x"}, fh("linear", 1, 0, nil, false, false)), http.StatusOK},
		{"attempts 11", hookRequest("http://127.0.0.1:1/", []string{"x"}, fh("linear", 1, 11, nil, false, false)), http.StatusBadRequest},
		{"bad strategy", hookRequest("http://127.0.0.1:1/", []string{"x"}, fh("random", 1, 3, nil, false, false)), http.StatusBadRequest},
		{"bad trigger", hookRequest("http://127.0.0.1:1/", []string{"x"}, fh("linear", 1, 3, []string{"7xx"}, false, false)), http.StatusBadRequest},
		{"no url", map[string]any{"name": "n", "enabled": true, "eventTypes": []string{}, "endpoint": map[string]any{}}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		b, _ := json.Marshal(tt.req)
		resp, err := hs.Client().Post(hs.URL+"/event/"+s.Tenant()+"/webhooks", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
}

func do(t *testing.T, hs *httptest.Server, method, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, hs.URL+path, nil)
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// When deliveries fail for good, the alert endpoint hears about it once.
func TestWebhookAlertEndpoint(t *testing.T) {
	s, hs := newTestServer(t, Config{Seed: 36, Events: 10})
	rc := newReceiver(t, func(w http.ResponseWriter, _ int) { w.WriteHeader(http.StatusBadGateway) })
	alerts := make(chan alertJSON, 10)
	alertSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a alertJSON
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			t.Errorf("alert body: %v", err)
		}
		alerts <- a
	}))
	defer alertSrv.Close()
	f := fh("linear", 1, 2, []string{"5xx"}, true, false)
	f["alertEndpoint"] = map[string]any{"url": alertSrv.URL}
	wl := createWebhook(t, s, hs, hookRequest(rc.srv.URL, []string{"policy.quote.create"}, f))
	e := firstOfType(t, s, "policy.quote.create")
	select {
	case a := <-alerts:
		want := alertJSON{WebhookLocator: wl, EventLocator: e.Locator, FailureTrigger: "502", Diverted: true}
		a.FailureMessage, a.FailureTimestamp = "", ""
		if a != want {
			t.Errorf("alert %+v, want %+v", a, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no alert")
	}
	if got := rc.count(e.Locator); got != 2 {
		t.Errorf("%d deliveries before the alert, want 2", got)
	}
}
