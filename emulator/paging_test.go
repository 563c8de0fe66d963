package emulator

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

var flavors = []string{FlavorSuite, FlavorClassic}

// Rule 1: the first call needs a filter (a start timestamp or a type).
func TestPagingRule1FirstCallNeedsFilter(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 1, Events: 50})
			typeParam := map[string]string{FlavorSuite: "type", FlavorClassic: "eventType"}[fl]
			firstType := s.Events()[0].Type
			tests := []struct {
				name string
				q    url.Values
				want int
			}{
				{"nothing", nil, http.StatusBadRequest},
				{"page size only", url.Values{"pageSize": {"10"}}, http.StatusBadRequest},
				{"start", startQuery(s), http.StatusOK},
				{"type", url.Values{typeParam: {firstType}}, http.StatusOK},
			}
			for _, tt := range tests {
				got, body := get(t, hs, listPath(s), tt.q, "")
				if got != tt.want {
					t.Errorf("%s: status %d, want %d (%s)", tt.name, got, tt.want, body)
				}
			}
		})
	}
}

// Rule 2: results ascend in time, ties ordered by locator, and paging
// through the whole stream yields exactly Events().
func TestPagingRule2AscendingTiesByLocator(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 2, Events: 2500})
			q := startQuery(s)
			q.Set("pageSize", "333")
			got, _ := readAll(t, s, hs, q)
			want := s.Events()
			if len(got) != len(want) {
				t.Fatalf("paged %d events, want %d", len(got), len(want))
			}
			ties := 0
			for i, e := range got {
				if e.key() != want[i].Locator {
					t.Fatalf("event %d: locator %s, want %s", i, e.key(), want[i].Locator)
				}
				if i == 0 {
					continue
				}
				prev, cur := want[i-1], want[i]
				if cur.Timestamp.Before(prev.Timestamp) {
					t.Fatalf("event %d at %s before event %d at %s", i, cur.Timestamp, i-1, prev.Timestamp)
				}
				if cur.Timestamp.Equal(prev.Timestamp) {
					ties++
					if cur.Locator <= prev.Locator {
						t.Fatalf("tie at %s: locator %s not after %s", cur.Timestamp, cur.Locator, prev.Locator)
					}
				}
			}
			if ties == 0 {
				t.Error("no equal timestamps in the stream: the tie rule was not exercised")
			}
		})
	}
}

// Rule 3: every response carries a token, a fresh one each call.
func TestPagingRule3FreshTokenEveryCall(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 3, Events: 30})
			seen := map[string]bool{}
			q := startQuery(s)
			for i := 0; i < 6; i++ { // the last calls are past the end
				p := fetchPage(t, s, hs, q)
				if p.PagingToken == "" {
					t.Fatalf("call %d: no pagingToken", i)
				}
				if seen[p.PagingToken] {
					t.Fatalf("call %d: token %s already returned", i, p.PagingToken)
				}
				seen[p.PagingToken] = true
				q = url.Values{"pagingToken": {p.PagingToken}, "pageSize": nil}
				delete(q, "pageSize")
			}
			// Calling twice with the same token returns the same events, new tokens.
			q = startQuery(s)
			q.Set("pageSize", "5")
			tok := fetchPage(t, s, hs, q).PagingToken
			a := fetchPage(t, s, hs, url.Values{"pagingToken": {tok}})
			b := fetchPage(t, s, hs, url.Values{"pagingToken": {tok}})
			if a.PagingToken == b.PagingToken {
				t.Error("same token twice gave the same next token")
			}
			if len(a.Events) != 5 || len(b.Events) != 5 || a.Events[0].key() != b.Events[0].key() {
				t.Errorf("replayed token gave different pages: %d/%d events", len(a.Events), len(b.Events))
			}
		})
	}
}

// Rule 4: a token combined with any other argument is an error.
func TestPagingRule4TokenAlone(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 4, Events: 30})
			tok := fetchPage(t, s, hs, startQuery(s)).PagingToken
			typeParam := map[string]string{FlavorSuite: "type", FlavorClassic: "eventType"}[fl]
			for _, extra := range []string{"startTimestamp", "endTimestamp", typeParam, "pageSize"} {
				q := url.Values{"pagingToken": {tok}, extra: {"1"}}
				got, body := get(t, hs, listPath(s), q, "")
				if got != http.StatusBadRequest || !strings.Contains(string(body), "cannot be combined") {
					t.Errorf("token with %s: %d %s, want 400 'cannot be combined'", extra, got, body)
				}
			}
		})
	}
}

// Rule 5: a token lasts forever; at the end it returns later arrivals.
func TestPagingRule5TokenLastsForever(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 5, Events: 200})
			all, tok := readAll(t, s, hs, startQuery(s))
			if len(all) != s.Len() {
				t.Fatalf("read %d events, want %d", len(all), s.Len())
			}
			// Caught up: empty page, still a token.
			p := fetchPage(t, s, hs, url.Values{"pagingToken": {tok}})
			if len(p.Events) != 0 || p.PagingToken == "" {
				t.Fatalf("caught-up page: %d events, token %q", len(p.Events), p.PagingToken)
			}
			added := s.Append(120)
			if len(added) < 120 {
				t.Fatalf("Append(120) returned %d events", len(added))
			}
			if added[0].Timestamp.Before(s.Events()[len(all)-1].Timestamp) {
				t.Fatalf("appended event at %s before the last served one", added[0].Timestamp)
			}
			// The saved token (not the newest) returns exactly the new events.
			more, _ := readAll(t, s, hs, url.Values{"pagingToken": {tok}})
			if len(more) != len(added) {
				t.Fatalf("saved token returned %d events, want %d", len(more), len(added))
			}
			for i := range more {
				if more[i].key() != added[i].Locator {
					t.Fatalf("event %d: %s, want %s", i, more[i].key(), added[i].Locator)
				}
			}
		})
	}
}

// Rule 6: page sizes (default 100, maximum 1000) and bad tokens.
func TestPagingRule6PageSizes(t *testing.T) {
	s, hs := newTestServer(t, Config{Seed: 6, Events: 2500})
	tests := []struct {
		pageSize string
		wantCode int
		wantLen  int
	}{
		{"", http.StatusOK, 100},
		{"1", http.StatusOK, 1},
		{"1000", http.StatusOK, 1000},
		{"1001", http.StatusBadRequest, 0},
		{"0", http.StatusBadRequest, 0},
		{"-5", http.StatusBadRequest, 0},
		{"ten", http.StatusBadRequest, 0},
	}
	for _, tt := range tests {
		q := startQuery(s)
		if tt.pageSize != "" {
			q.Set("pageSize", tt.pageSize)
		}
		code, body := get(t, hs, listPath(s), q, "")
		if code != tt.wantCode {
			t.Errorf("pageSize=%q: status %d, want %d", tt.pageSize, code, tt.wantCode)
			continue
		}
		if code != http.StatusOK {
			continue
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Events) != tt.wantLen {
			t.Errorf("pageSize=%q: %d events, want %d", tt.pageSize, len(p.Events), tt.wantLen)
		}
		// The size sticks to the token.
		next := fetchPage(t, s, hs, url.Values{"pagingToken": {p.PagingToken}})
		if len(next.Events) != tt.wantLen {
			t.Errorf("pageSize=%q: follow-up page has %d events, want %d", tt.pageSize, len(next.Events), tt.wantLen)
		}
	}
}

func TestPagingRule6BadTokens(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 6, Events: 50})
			tok := fetchPage(t, s, hs, startQuery(s)).PagingToken
			other, _ := newTestServer(t, Config{Flavor: fl, Seed: 7, Events: 50})
			otherTok := other.encodeToken(cursor{pos: 1, size: 10})
			payload, sig, _ := strings.Cut(tok, ".")
			// Move the position forward, keeping the signature: a client
			// trying to skip events.
			raw, err := base64.RawURLEncoding.DecodeString(payload)
			if err != nil {
				t.Fatal(err)
			}
			raw[8] += 3
			forged := base64.RawURLEncoding.EncodeToString(raw)
			tests := []struct {
				name, token, wantMsg string
			}{
				{"garbage", "hello", "invalid pagingToken"},
				{"empty", "", "invalid pagingToken"},
				{"tampered payload", forged + "." + sig, "signature mismatch"},
				{"truncated signature", payload + "." + sig[:4], "signature mismatch"},
				{"no signature", payload, "not a token issued by this server"},
				{"other seed", otherTok, "signature mismatch"},
			}
			for _, tt := range tests {
				code, body := get(t, hs, listPath(s), url.Values{"pagingToken": {tt.token}}, "")
				if code != http.StatusBadRequest || !strings.Contains(string(body), tt.wantMsg) {
					t.Errorf("%s: %d %s, want 400 containing %q", tt.name, code, body, tt.wantMsg)
				}
			}
		})
	}
}

// Filters: type and time range, carried by the token.
func TestPagingFilters(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			s, hs := newTestServer(t, Config{Flavor: fl, Seed: 8, Events: 3000})
			all := s.Events()
			typ := all[len(all)/2].Type
			from, to := all[1000].Timestamp, all[2000].Timestamp
			typeParam := map[string]string{FlavorSuite: "type", FlavorClassic: "eventType"}[fl]
			ts := func(t time.Time) string {
				if fl == FlavorClassic {
					return formatMS(t)
				}
				return t.Format("2006-01-02T15:04:05.000Z07:00")
			}
			tests := []struct {
				name string
				q    url.Values
				keep func(Event) bool
			}{
				{"type", url.Values{typeParam: {typ}, "pageSize": {"7"}}, func(e Event) bool { return e.Type == typ }},
				{"range", url.Values{"startTimestamp": {ts(from)}, "endTimestamp": {ts(to)}, "pageSize": {"50"}},
					func(e Event) bool { return !e.Timestamp.Before(from) && e.Timestamp.Before(to) }},
				{"range and type", url.Values{"startTimestamp": {ts(from)}, typeParam: {typ}},
					func(e Event) bool { return !e.Timestamp.Before(from) && e.Type == typ }},
				{"unknown type", url.Values{typeParam: {"no.such.type"}}, func(Event) bool { return false }},
			}
			for _, tt := range tests {
				var want []string
				for _, e := range all {
					if tt.keep(e) {
						want = append(want, e.Locator)
					}
				}
				evs, _ := readAll(t, s, hs, tt.q)
				var got []string
				for _, e := range evs {
					got = append(got, e.key())
				}
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("%s: got %d events, want %d", tt.name, len(got), len(want))
				}
			}
		})
	}
}

func formatMS(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// Authentication: 401 without or with a wrong token, 403 for another tenant.
func TestAuth(t *testing.T) {
	s, hs := newTestServer(t, Config{Seed: 9, Events: 20, Token: "s3cret"})
	other := "00000000-0000-4000-8000-000000000000"
	tests := []struct {
		name, path, token string
		want              int
	}{
		{"no token", listPath(s), "", http.StatusUnauthorized},
		{"wrong token", listPath(s), "nope", http.StatusUnauthorized},
		{"right token", listPath(s), "s3cret", http.StatusOK},
		{"other tenant", "/event/" + other + "/events/list", "s3cret", http.StatusForbidden},
		{"other tenant billing", "/billing/" + other + "/invoices/01HK153X00EM89VKP3NM3QWXBC", "s3cret", http.StatusForbidden},
		{"other tenant no token", "/event/" + other + "/events/list", "", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		code, body := get(t, hs, tt.path, startQuery(s), tt.token)
		if code != tt.want {
			t.Errorf("%s: %d %s, want %d", tt.name, code, body, tt.want)
		}
	}
}

// A token saved before a restart (same seed, shorter preload) still works:
// caught up at first, then the events after its position.
func TestPagingTokenSurvivesRestart(t *testing.T) {
	for _, fl := range flavors {
		t.Run(fl, func(t *testing.T) {
			long, lhs := newTestServer(t, Config{Flavor: fl, Seed: 10, Events: 600})
			_, tok := readAll(t, long, lhs, startQuery(long))
			short, shs := newTestServer(t, Config{Flavor: fl, Seed: 10, Events: 100})
			p := fetchPage(t, short, shs, url.Values{"pagingToken": {tok}})
			if len(p.Events) != 0 {
				t.Fatalf("token beyond the end returned %d events, want a caught-up page", len(p.Events))
			}
			short.Append(long.Len() - short.Len() + 200)
			more, _ := readAll(t, short, shs, url.Values{"pagingToken": {tok}})
			want := short.Events()[long.Len():]
			if len(more) != len(want) || len(want) == 0 || more[0].key() != want[0].Locator {
				t.Fatalf("after the restart the saved token returned %d events, want the %d after its position", len(more), len(want))
			}
		})
	}
}
