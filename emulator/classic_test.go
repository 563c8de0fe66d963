package emulator

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"testing"
	"time"
)

var uuidV7RE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// The classic wire format: string ids (UUID v7), millisecond timestamps as
// strings, username only on attributedEvents.
func TestClassicWireFormat(t *testing.T) {
	s, hs := newTestServer(t, Config{Flavor: FlavorClassic, Seed: 51, Events: 300})
	want := s.Events()
	for _, path := range []string{"/eventstream/events", "/eventstream/attributedEvents"} {
		code, body := get(t, hs, path, url.Values{"startTimestamp": {"0"}, "pageSize": {"1000"}}, "")
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		var p struct {
			PagingToken string           `json:"pagingToken"`
			Events      []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Events) != len(want) || p.PagingToken == "" {
			t.Fatalf("%s: %d events, token %q; want %d", path, len(p.Events), p.PagingToken, len(want))
		}
		for i, e := range p.Events {
			id, _ := e["id"].(string)
			ts, isString := e["timestamp"].(string)
			ms, err := strconv.ParseInt(ts, 10, 64)
			if !uuidV7RE.MatchString(id) || !isString || err != nil || ms != want[i].Timestamp.UnixMilli() {
				t.Fatalf("%s event %d: id %v timestamp %#v, want a UUID v7 and %d as a string", path, i, e["id"], e["timestamp"], want[i].Timestamp.UnixMilli())
			}
			name, hasName := e["username"]
			if attributed := path == "/eventstream/attributedEvents"; attributed != hasName || (attributed && name != want[i].Username) {
				t.Fatalf("%s event %d: username %v, want attributed=%v %q", path, i, name, attributed, want[i].Username)
			}
			if _, ok := e["locator"]; ok {
				t.Fatalf("classic event %d has a suite locator", i)
			}
		}
	}
}

// The classic error body.
func TestClassicErrorBody(t *testing.T) {
	s, hs := newTestServer(t, Config{Flavor: FlavorClassic, Seed: 52, Events: 10, Token: "t"})
	tests := []struct {
		name  string
		q     url.Values
		token string
		code  int
		field string
	}{
		{"no filter", url.Values{}, "t", 400, ""},
		{"bad start", url.Values{"startTimestamp": {"2024-01-01"}}, "t", 400, "startTimestamp"},
		{"bad page size", url.Values{"startTimestamp": {"0"}, "pageSize": {"5000"}}, "t", 400, "pageSize"},
		{"bad token", url.Values{"pagingToken": {"x.y"}}, "t", 400, "pagingToken"},
		{"unauthenticated", url.Values{"startTimestamp": {"0"}}, "", 401, ""},
	}
	for _, tt := range tests {
		code, body := get(t, hs, "/eventstream/events", tt.q, tt.token)
		var e struct {
			APIErrorCode  *string           `json:"apiErrorCode"`
			HTTPErrorCode *int              `json:"httpErrorCode"`
			HTTPStatus    *string           `json:"httpStatus"`
			Message       *string           `json:"message"`
			FieldErrors   map[string]string `json:"fieldErrors"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%s: %v: %s", tt.name, err, body)
		}
		if code != tt.code || e.APIErrorCode == nil || e.HTTPErrorCode == nil || *e.HTTPErrorCode != tt.code ||
			e.HTTPStatus == nil || *e.HTTPStatus != http.StatusText(tt.code) || e.Message == nil || *e.Message == "" || e.FieldErrors == nil {
			t.Errorf("%s: %d %s, want the classic error body with %d", tt.name, code, body, tt.code)
		}
		if tt.field != "" && e.FieldErrors[tt.field] == "" {
			t.Errorf("%s: fieldErrors %v lacks %s", tt.name, e.FieldErrors, tt.field)
		}
	}
	_ = s
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{"zero is valid", Config{}, nil},
		{"classic", Config{Flavor: FlavorClassic, Tenant: "6f1c2a9e-7d3b-4c1a-9e2f-0a1b2c3d4e5f"}, nil},
		{"everything wrong at once",
			Config{Flavor: "modern", Tenant: "acme", Policies: -1, Events: -2, Rate: -1, PageSizeDefault: 50, PageSizeMax: 10, PGTable: "drop table;",
				Faults: FaultConfig{ErrorRate: 2, ResetRate: -0.1, Latency: -time.Second}},
			[]string{"emulator.flavor", "emulator.tenant", "emulator.policies", "emulator.events", "emulator.rate",
				"emulator.page-size-default", "pg.table", "fault.error-rate", "fault.reset-rate", "fault.latency"}},
		{"rates add up above 1", Config{Faults: FaultConfig{ErrorRate: 0.6, ThrottleRate: 0.6}}, []string{"add up"}},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != (len(tt.wantErr) == 0) {
			t.Errorf("%s: Validate() = %v, want errors %v", tt.name, err, tt.wantErr)
			continue
		}
		for _, w := range tt.wantErr {
			if !regexp.MustCompile(regexp.QuoteMeta(w)).MatchString(err.Error()) {
				t.Errorf("%s: error %q does not mention %s", tt.name, err, w)
			}
		}
	}
	if _, err := New(Config{Flavor: "modern"}); err == nil {
		t.Error("New accepted an invalid config")
	}
}

// Live traffic: Start appends events as time passes, with ascending
// timestamps, and stops with its context.
func TestLiveTraffic(t *testing.T) {
	s, hs := newTestServer(t, Config{Seed: 53, Events: 100, Rate: 500})
	ctx := testContext(t)
	all, tok := readAll(t, s, hs, startQuery(s))
	s.Start(ctx)
	waitFor(t, "live events", func() bool { return s.Len() >= len(all)+100 })
	more, _ := readAll(t, s, hs, url.Values{"pagingToken": {tok}})
	if len(more) < 100 {
		t.Fatalf("the saved token returned %d live events, want at least 100", len(more))
	}
	evs := s.Events()
	for i := 1; i < len(evs); i++ {
		if evs[i].Timestamp.Before(evs[i-1].Timestamp) {
			t.Fatalf("live event %d at %s before %s", i, evs[i].Timestamp, evs[i-1].Timestamp)
		}
	}
	s.Close()
	n := s.Len()
	time.Sleep(100 * time.Millisecond)
	if s.Len() != n {
		t.Errorf("events still appended after Close: %d → %d", n, s.Len())
	}
}

// LiveClock: appended events carry the wall-clock time, still ascending.
func TestLiveClock(t *testing.T) {
	tests := []struct {
		name      string
		liveClock bool
		wantNow   bool
	}{
		{"simulated time", false, false},
		{"wall clock", true, true},
	}
	for _, tt := range tests {
		s, _ := newTestServer(t, Config{Seed: 54, Events: 200, LiveClock: tt.liveClock})
		before := time.Now().Add(-time.Second)
		added := s.Append(50)
		gotNow := !added[0].Timestamp.Before(before)
		if gotNow != tt.wantNow {
			t.Errorf("%s: first appended event at %s (now %s): wall clock %v, want %v", tt.name, added[0].Timestamp, before, gotNow, tt.wantNow)
		}
		evs := s.Events()
		for i := 1; i < len(evs); i++ {
			if evs[i].Timestamp.Before(evs[i-1].Timestamp) {
				t.Fatalf("%s: event %d at %s before %s", tt.name, i, evs[i].Timestamp, evs[i-1].Timestamp)
			}
		}
	}
}
