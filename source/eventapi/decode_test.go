package eventapi

import (
	"io"
	"net/http"
	"net/url"
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
		{"event without locator", source.FlavorSuite, `{"pagingToken":"p1","events":[{"type":"a","timestamp":"2024-01-01T00:00:00Z","data":{}}]}`},
		{"bad suite timestamp", source.FlavorSuite, `{"pagingToken":"p1","events":[{"locator":"L","type":"a","timestamp":"yesterday","data":{}}]}`},
		{"bad classic timestamp", source.FlavorClassic, `{"pagingToken":"p1","events":[{"id":"E","type":"a","timestamp":"2024-01-01","data":{}}]}`},
		{"not an object", source.FlavorClassic, `[1,2]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := decodePage(tt.flavor, "t", []byte(tt.body)); err == nil {
				t.Errorf("decodePage(%s) succeeded, want an error", tt.body)
			}
		})
	}
}

// pageBody returns the body of the emulator's first page of 1000 events of
// flavor, as the client receives it.
func pageBody(b *testing.B, flavor string) []byte {
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

// BenchmarkDecodePage decodes one page of 1000 emulated events per flavor.
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
	}
}
