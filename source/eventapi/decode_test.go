package eventapi

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/source"
)

func TestDecodePageErrors(t *testing.T) {
	tests := []struct {
		name, flavor, body string
	}{
		{"truncated", source.FlavorSuite, `{"pagingToken":"p1","events":[{"locator":"L`},
		{"no token", source.FlavorSuite, `{"events":[]}`},
		{"empty token", source.FlavorClassic, `{"events":[],"pagingToken":""}`},
		{"token not a string", source.FlavorSuite, `{"events":[],"pagingToken":5}`},
		{"events not an array", source.FlavorSuite, `{"events":{"a":1},"pagingToken":"p1"}`},
		{"not an object", source.FlavorClassic, `[1,2]`},
		{"not JSON", source.FlavorClassic, `<html>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if evs, _, err := decodePage(tt.flavor, "t", []byte(tt.body)); err == nil {
				t.Errorf("decodePage(%s) = %d events, want an error", tt.body, len(evs))
			}
		})
	}
}

// TestDecodeRejects decodes pages holding unreadable events among readable
// ones: each comes back in its place with its reason, its exact raw bytes
// and what could be read; the others are untouched.
func TestDecodeRejects(t *testing.T) {
	ts := func(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
	const t1, t2 = 1704067200000, 1704067201500 // 2024-01-01T00:00:00Z, +1.5 s
	suiteGood := func(loc string, ms int64) string {
		return fmt.Sprintf(`{"locator":%q,"requestId":"R","userLocator":"U","timestamp":%q,"type":"policy.issue","data":{"a":1}}`,
			loc, ts(ms).Format("2006-01-02T15:04:05.000Z07:00"))
	}
	good := func(loc string, ms int64, flavor string) source.Event {
		ev := source.Event{Locator: loc, Tenant: "t", Type: "policy.issue", Timestamp: ts(ms), Data: []byte(`{"a":1}`), Flavor: flavor, Seq: uint64(ms)}
		if flavor == source.FlavorSuite {
			ev.RequestID, ev.UserLocator = "R", "U"
		}
		return ev
	}
	classicGood := func(id string, ms int64) string {
		return fmt.Sprintf(`{"id":%q,"timestamp":%d,"type":"policy.issue","data":{"a":1}}`, id, ms)
	}
	tests := []struct {
		name, flavor string
		events       []string
		want         []source.Event // Data of a reject: the raw event
	}{
		{"suite missing locator", source.FlavorSuite,
			[]string{suiteGood("A", t1), `{ "requestId":"R2", "timestamp":"2024-01-01T00:00:01Z","type":"policy.issue","data":{"b" : 2} }`, suiteGood("C", t2)},
			[]source.Event{good("A", t1, source.FlavorSuite),
				{Reject: "missing_field: locator", RequestID: "R2", Tenant: "t", Type: "policy.issue", Timestamp: ts(t1 + 1000), Flavor: source.FlavorSuite, Seq: t1 + 1000,
					Data: []byte(`{ "requestId":"R2", "timestamp":"2024-01-01T00:00:01Z","type":"policy.issue","data":{"b" : 2} }`)},
				good("C", t2, source.FlavorSuite)}},
		{"suite bad timestamp takes the previous Seq", source.FlavorSuite,
			[]string{suiteGood("A", t1), `{"locator":"B","timestamp":"yesterday","type":"policy.issue","data":{}}`, suiteGood("C", t2)},
			[]source.Event{good("A", t1, source.FlavorSuite),
				{Reject: `bad_time: "yesterday" is not RFC 3339`, Locator: "B", Tenant: "t", Type: "policy.issue", Flavor: source.FlavorSuite, Seq: t1,
					Data: []byte(`{"locator":"B","timestamp":"yesterday","type":"policy.issue","data":{}}`)},
				good("C", t2, source.FlavorSuite)}},
		{"suite first of a page takes the next Seq", source.FlavorSuite,
			[]string{`{"locator":"A","data":{}}`, suiteGood("B", t2)},
			[]source.Event{
				{Reject: "missing_field: type, timestamp", Locator: "A", Tenant: "t", Flavor: source.FlavorSuite, Seq: t2, Data: []byte(`{"locator":"A","data":{}}`)},
				good("B", t2, source.FlavorSuite)}},
		{"suite field of the wrong type", source.FlavorSuite,
			[]string{suiteGood("A", t1), `{"locator":42,"type":"policy.issue","timestamp":"2024-01-01T00:00:01Z","data":{}}`, suiteGood("C", t2)},
			[]source.Event{good("A", t1, source.FlavorSuite),
				{Reject: "invalid_json: cannot unmarshal number into Go struct field suiteEvent.locator of type string", Tenant: "t", Type: "policy.issue",
					Timestamp: ts(t1 + 1000), Flavor: source.FlavorSuite, Seq: t1 + 1000,
					Data: []byte(`{"locator":42,"type":"policy.issue","timestamp":"2024-01-01T00:00:01Z","data":{}}`)},
				good("C", t2, source.FlavorSuite)}},
		{"suite not an object", source.FlavorSuite,
			[]string{suiteGood("A", t1), `null`, `17`, suiteGood("C", t2)},
			[]source.Event{good("A", t1, source.FlavorSuite),
				{Reject: "missing_field: locator, type, timestamp", Tenant: "t", Flavor: source.FlavorSuite, Seq: t1, Data: []byte(`null`)},
				{Reject: "invalid_json: cannot unmarshal number into Go value of type eventapi.suiteEvent", Tenant: "t", Flavor: source.FlavorSuite, Seq: t1, Data: []byte(`17`)},
				good("C", t2, source.FlavorSuite)}},
		{"classic missing id and bad timestamp", source.FlavorClassic,
			[]string{classicGood("A", t1), `{"timestamp":"1704067201000","type":"policy.issue","data":{}}`, `{"id":"B","timestamp":"2024-01-01","type":"policy.issue"}`, classicGood("C", t2)},
			[]source.Event{good("A", t1, source.FlavorClassic),
				{Reject: "missing_field: id", Tenant: "t", Type: "policy.issue", Timestamp: ts(t1 + 1000), Flavor: source.FlavorClassic, Seq: t1 + 1000,
					Data: []byte(`{"timestamp":"1704067201000","type":"policy.issue","data":{}}`)},
				{Reject: `bad_time: "2024-01-01" is not milliseconds since the epoch`, Locator: "B", Tenant: "t", Type: "policy.issue", Flavor: source.FlavorClassic, Seq: t1 + 1000,
					Data: []byte(`{"id":"B","timestamp":"2024-01-01","type":"policy.issue"}`)},
				good("C", t2, source.FlavorClassic)}},
		{"classic type of the wrong type", source.FlavorClassic,
			[]string{classicGood("A", t1), `{"id":7,"timestamp":null,"type":["x"]}`},
			[]source.Event{good("A", t1, source.FlavorClassic),
				{Reject: "invalid_json: cannot unmarshal array into Go struct field classicEvent.type of type string", Locator: "7", Tenant: "t", Flavor: source.FlavorClassic, Seq: t1,
					Data: []byte(`{"id":7,"timestamp":null,"type":["x"]}`)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"events":[` + strings.Join(tt.events, ", ") + `],"pagingToken":"next"}`
			got, next, err := decodePage(tt.flavor, "t", []byte(body))
			if err != nil || next != "next" {
				t.Fatalf("decodePage = %q, %v; want the page", next, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d events, want %d", len(got), len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if string(g.Data) != string(w.Data) {
					t.Errorf("event %d Data = %s, want %s", i, g.Data, w.Data)
				}
				if !g.Timestamp.Equal(w.Timestamp) {
					t.Errorf("event %d Timestamp = %v, want %v", i, g.Timestamp, w.Timestamp)
				}
				g.Data, w.Data, g.Timestamp, w.Timestamp = nil, nil, time.Time{}, time.Time{}
				if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
					t.Errorf("event %d:\n got  %+v\n want %+v", i, g, w)
				}
			}
		})
	}
}

// TestPoisonEventsDelivered reads, through Read, a stream with unreadable
// events among readable ones, in both flavors: every event arrives once and
// in order, the unreadable ones with Reject and their exact raw bytes, and
// a page-sized client-side type filter never drops a reject.
func TestPoisonEventsDelivered(t *testing.T) {
	bad := map[string]map[int]string{
		source.FlavorSuite: {
			1: `{"requestId":"R1","timestamp":"2024-01-01T00:00:01.500Z","type":"policy.quote.create","data":{ "x" : 1 }}`,
			4: `{"locator":"L0004","timestamp":"not a time","type":"policy.issue","data":{}}`,
			5: `{"timestamp":"2024-01-01T00:00:07.500Z","data":{}}`,
		},
		source.FlavorClassic: {
			0: `{"timestamp":1704067200000,"type":"policy.issue","data":{}}`,
			4: `{"id":"E0004","timestamp":"soon","type":"policy.issue","data":{}}`,
			7: `{"id":"E0007","type":"policy.quote.create"}`,
		},
	}
	for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
		t.Run(flavor, func(t *testing.T) {
			f, srv := newFake(t, flavor, 9)
			f.mu.Lock()
			for i, ev := range bad[flavor] {
				f.events[i] = ev
			}
			f.mu.Unlock()
			cfg := testConfig(flavor, srv.URL)
			cfg.Types = []string{"policy.issue", "billing.invoice.generate"} // client-side
			var want []string
			for i, loc := range wantLocators(flavor, 0, 9) {
				if raw, ok := bad[flavor][i]; ok {
					want = append(want, "reject "+raw)
				} else if i%2 == 0 { // fakeEvent: even events are policy.issue
					want = append(want, loc)
				}
			}
			c := open(t, cfg, "")
			evs, _ := readN(t, c, len(want), 100, 10*time.Second)
			var got []string
			for _, ev := range evs {
				if ev.Reject != "" {
					got = append(got, "reject "+string(ev.Data))
				} else {
					got = append(got, ev.Locator)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("events:\n got  %q\n want %q", got, want)
			}
		})
	}
}

// pageBody returns the body of the emulator's first page of 1000 events of
// flavor, as the client receives it.
func pageBody(b testing.TB, flavor string) []byte {
	b.Helper()
	s, srv := startEmulator(b, flavor, 1000)
	path := "/event/" + s.Tenant() + "/events/list"
	start := s.Config().Start.Add(-time.Hour).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	if flavor == source.FlavorClassic {
		path, start = "/eventstream/events", "0"
	}
	q := url.Values{"startTimestamp": {start}, "pageSize": {"1000"}}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path+"?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+emuToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("page: %d %v", resp.StatusCode, err)
	}
	return body
}

// BenchmarkDecodePage decodes one page of 1000 emulated events per flavor,
// with decodePage (its fast path) and with decodePageReference (encoding/json).
func BenchmarkDecodePage(b *testing.B) {
	for _, flavor := range []string{source.FlavorSuite, source.FlavorClassic} {
		b.Run(flavor, func(b *testing.B) {
			body := pageBody(b, flavor)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				evs, _, err := decodePage(flavor, "t", body)
				if err != nil || len(evs) != 1000 {
					b.Fatalf("decodePage: %d events, %v", len(evs), err)
				}
			}
		})
		b.Run(flavor+"-reference", func(b *testing.B) {
			body := pageBody(b, flavor)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				evs, _, err := decodePageReference(flavor, "t", body)
				if err != nil || len(evs) != 1000 {
					b.Fatalf("decodePageReference: %d events, %v", len(evs), err)
				}
			}
		})
	}
}
