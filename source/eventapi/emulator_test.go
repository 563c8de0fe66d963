package eventapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/source"
)

const emuToken = "emulator-token"

// startEmulator serves an in-process emulator of flavor with n events.
func startEmulator(t testing.TB, flavor string, n int) (*emulator.Server, *httptest.Server) {
	t.Helper()
	s, err := emulator.New(emulator.Config{Flavor: flavor, Seed: 42, Events: n, Token: emuToken, Policies: 300})
	if err != nil {
		t.Fatalf("emulator.New: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return s, srv
}

// emulatorConfig returns a Config reading the whole emulated history.
func emulatorConfig(s *emulator.Server, srv *httptest.Server, pageSize int) Config {
	cfg := Config{
		Flavor:         s.Config().Flavor,
		URL:            srv.URL,
		Tenant:         s.Tenant(),
		Token:          emuToken,
		Start:          s.Config().Start.Add(-time.Hour),
		PageSize:       pageSize,
		PollInterval:   20 * time.Millisecond,
		RequestTimeout: 5 * time.Second,
	}
	return cfg
}

// compareEvents checks got against the emulator's events want, field by
// field, Data byte for byte.
func compareEvents(t *testing.T, got []source.Event, want []emulator.Event, attributed bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d events, want %d", len(got), len(want))
	}
	bad := 0
	for i := range want {
		w, g := want[i], got[i]
		exp := source.Event{
			Locator: w.Locator, RequestID: w.RequestID, UserLocator: w.UserLocator,
			Tenant: w.Tenant, Type: w.Type, Timestamp: w.Timestamp.UTC(), Data: w.Data,
			Seq: uint64(w.Timestamp.UnixMilli()), Flavor: g.Flavor,
		}
		if attributed {
			exp.Username = w.Username
		}
		ok := g.Locator == exp.Locator && g.RequestID == exp.RequestID && g.UserLocator == exp.UserLocator &&
			g.Username == exp.Username && g.TransactionID == "" && g.Tenant == exp.Tenant && g.Type == exp.Type &&
			g.Timestamp.Equal(exp.Timestamp) && g.Timestamp.Location() == time.UTC && bytes.Equal(g.Data, exp.Data) && g.Seq == exp.Seq
		if !ok {
			bad++
			if bad <= 3 {
				t.Errorf("event %d:\n got  %+v\n want %+v", i, g, exp)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d events differ", bad, len(want))
	}
}

func TestEmulatorWholeHistory(t *testing.T) {
	tests := []struct {
		flavor     string
		attributed bool
	}{{source.FlavorSuite, false}, {source.FlavorClassic, false}, {source.FlavorClassic, true}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s attributed=%t", tt.flavor, tt.attributed), func(t *testing.T) {
			s, srv := startEmulator(t, tt.flavor, 3000)
			cfg := emulatorConfig(s, srv, 400)
			cfg.Attributed = tt.attributed
			c := open(t, cfg, "")
			want := s.Events()
			got, _ := readN(t, c, len(want), 1000, 30*time.Second)
			compareEvents(t, got, want, tt.attributed)
			for _, ev := range got {
				if ev.Flavor != tt.flavor {
					t.Fatalf("event %s flavor %q, want %q", ev.Locator, ev.Flavor, tt.flavor)
				}
			}
		})
	}
}

// TestEmulatorFaults reads through every fault the emulator injects and
// still gets exactly its history, each event once.
func TestEmulatorFaults(t *testing.T) {
	for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
		t.Run(flavor, func(t *testing.T) {
			s, srv := startEmulator(t, flavor, 2500)
			s.SetFaults(emulator.FaultConfig{
				ErrorRate: 0.1, ThrottleRate: 0.02, TruncateRate: 0.1, MalformedRate: 0.1, ResetRate: 0.05,
				DuplicateRate: 0.4, RetryAfter: time.Second,
			})
			cfg := emulatorConfig(s, srv, 50)
			c := open(t, cfg, "")
			want := s.Events()
			got, _, errs := readNErrs(t, c, len(want), 1000, 45*time.Second)
			compareEvents(t, got, want, false)
			// Every failure reached Read, classified; resets are mostly retried
			// by net/http itself (an idempotent GET on a reused connection), so
			// Read may see none of them.
			kinds := map[string]int{}
			for _, err := range errs {
				var ae *APIError
				switch {
				case fault.IsPermanent(err):
					t.Errorf("permanent error %v", err)
				case errors.As(err, &ae) && ae.Status == 429 && fault.RetryAfter(err) == time.Second:
					kinds["429"]++
				case errors.As(err, &ae) && ae.Status >= 500:
					kinds["5xx"]++
				case strings.Contains(err.Error(), "malformed body"):
					kinds["malformed"]++
				default:
					kinds["other"]++
				}
			}
			for _, k := range []string{"5xx", "429", "malformed"} {
				if kinds[k] == 0 {
					t.Errorf("no %s error (errors: %v): the faults did not reach Read", k, kinds)
				}
			}
			if c.Duplicates() == 0 {
				t.Errorf("no duplicate dropped with a duplicate rate of 0.4")
			}
			t.Logf("errors %v, duplicates dropped %d", kinds, c.Duplicates())
		})
	}
}

// TestEmulatorResumeMidway reads in small batches, stops after a batch that
// ends mid-page, resumes a new client from that batch's Position, and checks
// that together they read the history exactly once.
func TestEmulatorResumeMidway(t *testing.T) {
	for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
		t.Run(flavor, func(t *testing.T) {
			s, srv := startEmulator(t, flavor, 1200)
			cfg := emulatorConfig(s, srv, 100)
			want := s.Events()
			c := open(t, cfg, "")
			first, batches := readN(t, c, 530, 53, 20*time.Second)
			pos := batches[len(batches)-1].Position
			if !strings.HasPrefix(string(pos), skipPrefix) {
				t.Fatalf("position after 530 events with pages of 100 = %q, want a mid-page position", pos)
			}
			r := open(t, cfg, pos)
			rest, _ := readN(t, r, len(want)-len(first), 1000, 20*time.Second)
			compareEvents(t, append(first, rest...), want, false)
		})
	}
}

func TestEmulatorTailFollow(t *testing.T) {
	s, srv := startEmulator(t, source.FlavorSuite, 300)
	c := open(t, emulatorConfig(s, srv, 100), "")
	readN(t, c, s.Len(), 1000, 20*time.Second)
	time.Sleep(100 * time.Millisecond) // caught up: a few empty polls
	added := s.Append(40)
	got, _ := readN(t, c, len(added), 1000, 20*time.Second)
	compareEvents(t, got, added, false)
}

func TestEmulatorPermanentErrors(t *testing.T) {
	s, srv := startEmulator(t, source.FlavorSuite, 300)
	// A real token, tampered with.
	c := open(t, emulatorConfig(s, srv, 100), "")
	_, batches := readN(t, c, 100, 1000, 20*time.Second)
	tok := string(batches[0].Position)
	tampered := tok[:len(tok)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(tok, "AA")]
	tests := []struct {
		name   string
		token  string
		from   source.Position
		status int
		want   string
	}{
		{"tampered token", emuToken, source.Position(tampered), 400, "invalid pagingToken"},
		{"wrong bearer token", "not-the-token", "", 401, "missing or invalid bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := emulatorConfig(s, srv, 100)
			cfg.Token = tt.token
			c := open(t, cfg, tt.from)
			_, err := c.Read(testenv.Context(t, 10*time.Second), 10)
			var ae *APIError
			if !fault.IsPermanent(err) || !errors.As(err, &ae) || ae.Status != tt.status || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Read = %v, want a permanent %d error mentioning %q", err, tt.status, tt.want)
			}
		})
	}
}

// TestEmulatorEnrichment completes every incomplete billing list of the
// emulated history through its billing look-ups.
func TestEmulatorEnrichment(t *testing.T) {
	s, srv := startEmulator(t, source.FlavorSuite, 4000)
	cfg := emulatorConfig(s, srv, 1000)
	cfg.EnrichPolicyLocators = true
	c := open(t, cfg, "")
	evs, _ := readN(t, c, s.Len(), 1000, 30*time.Second)
	full, err := c.Enricher().Complete(testenv.Context(t, 30*time.Second), evs)
	if err != nil {
		t.Fatal(err)
	}
	var nIncomplete int
	for _, ev := range evs {
		d, ok := incomplete(ev)
		if !ok {
			continue
		}
		nIncomplete++
		pols, found := full[ev.Locator]
		if !found {
			t.Errorf("event %s (%s) not completed", ev.Locator, ev.Type)
			continue
		}
		if len(pols) <= 5 {
			t.Errorf("event %s (%s) completed to %d policies, want more than the 5 shown", ev.Locator, ev.Type, len(pols))
		}
		for _, it := range d.PolicyLocators.Items {
			if !strings.Contains(strings.Join(pols, ","), it) {
				t.Errorf("event %s: completed list %v lacks its own item %s", ev.Locator, pols, it)
			}
		}
	}
	if nIncomplete == 0 {
		t.Fatal("the emulated history has no incomplete policy list: nothing was tested")
	}
	if len(full) != nIncomplete {
		t.Errorf("completed %d events, want %d", len(full), nIncomplete)
	}
	t.Logf("%d incomplete billing events completed", nIncomplete)
}

// BenchmarkReadAll reads the whole emulated history through the Client and,
// in the same run, through a plain loop of http.Get and json.Decoder over the
// same pages, and reports events/s for both.
func BenchmarkReadAll(b *testing.B) {
	const n = 100_000
	s, srv := startEmulator(b, source.FlavorSuite, n)
	total := s.Len()
	b.Run("client", func(b *testing.B) {
		for range b.N {
			cfg := emulatorConfig(s, srv, 1000)
			c, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := c.Open(ctx, ""); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			for got := 0; got < total; {
				batch, err := c.Read(ctx, 1000)
				if err != nil {
					b.Fatal(err)
				}
				got += len(batch.Events)
			}
			b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
			c.Close(ctx)
		}
	})
	b.Run("baseline", func(b *testing.B) {
		for range b.N {
			start := time.Now()
			base := srv.URL + "/event/" + s.Tenant() + "/events/list?"
			q := url.Values{"startTimestamp": {s.Config().Start.Add(-time.Hour).Format(time.RFC3339)}, "pageSize": {"1000"}}
			for got := 0; got < total; {
				req, _ := http.NewRequest(http.MethodGet, base+q.Encode(), nil)
				req.Header.Set("Authorization", "Bearer "+emuToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				var page struct {
					PagingToken string `json:"pagingToken"`
					Events      []struct {
						Locator     string          `json:"locator"`
						RequestID   string          `json:"requestId"`
						UserLocator string          `json:"userLocator"`
						Timestamp   string          `json:"timestamp"`
						Type        string          `json:"type"`
						Data        json.RawMessage `json:"data"`
					} `json:"events"`
				}
				err = json.NewDecoder(resp.Body).Decode(&page)
				resp.Body.Close()
				if err != nil {
					b.Fatal(err)
				}
				got += len(page.Events)
				q = url.Values{"pagingToken": {page.PagingToken}}
			}
			b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
		}
	})
}
