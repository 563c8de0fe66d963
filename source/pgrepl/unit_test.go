package pgrepl

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/source"
)

func TestConfigValidate(t *testing.T) {
	valid := DefaultConfig()
	valid.DSN = "postgres://u@127.0.0.1:5432/db"
	tests := []struct {
		name string
		mod  func(*Config)
		want []string // substrings of the error; none: valid
	}{
		{"defaults with a DSN", func(*Config) {}, nil},
		{"key=value DSN", func(c *Config) { c.DSN = "host=127.0.0.1 dbname=x" }, nil},
		{"schema-qualified table", func(c *Config) { c.Table = "app.events" }, nil},
		{"missing DSN", func(c *Config) { c.DSN = "" }, []string{"--pg.dsn is required"}},
		{"bad table", func(c *Config) { c.Table = "a.b.c" }, []string{"--pg.table"}},
		{"bad slot and publication", func(c *Config) { c.Slot = "Slot-1"; c.Publication = "" }, []string{"--pg.slot", "--pg.publication"}},
		{"required columns", func(c *Config) { c.Columns.Locator = ""; c.Columns.Data = "" }, []string{"--pg.column.locator is required", "--pg.column.data is required"}},
		{"optional column may be empty", func(c *Config) { c.Columns.Username = "" }, nil},
		{"duplicate column", func(c *Config) { c.Columns.Type = "data" }, []string{"both name column"}},
		{"status interval", func(c *Config) { c.StatusInterval = time.Hour }, []string{"--pg.status-interval"}},
		{"flavor", func(c *Config) { c.Flavor = "other" }, []string{"--pg.flavor"}},
		{"work mem", func(c *Config) { c.DecodingWorkMem = "lots" }, []string{"--pg.decoding-work-mem"}},
		{"every problem at once", func(c *Config) { c.DSN = ""; c.Table = ""; c.Flavor = "x" }, []string{"--pg.dsn", "--pg.table", "--pg.flavor"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.mod(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got valid, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestRegisterFlags(t *testing.T) {
	c := DefaultConfig()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.RegisterFlags(fs)
	args := []string{"--pg.dsn=postgres://x@h/db", "--pg.table=s.t", "--pg.slot=s1", "--pg.publication=p1",
		"--pg.create-slot=false", "--pg.create-publication=false", "--pg.snapshot=false", "--pg.stream=false",
		"--pg.column.locator=id", "--pg.column.occurred-at=ts", "--pg.status-interval=3s"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	got := []any{c.DSN, c.Table, c.Slot, c.Publication, c.CreateSlot, c.CreatePublication, c.Snapshot, c.Stream, c.Columns.Locator, c.Columns.OccurredAt, c.StatusInterval}
	want := []any{"postgres://x@h/db", "s.t", "s1", "p1", false, false, false, false, "id", "ts", 3 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d: got %v, want %v", i, got[i], want[i])
		}
	}
	for _, name := range []string{"pg.column.request-id", "pg.column.user-locator", "pg.column.username", "pg.column.transaction-id",
		"pg.column.tenant", "pg.column.flavor", "pg.column.type", "pg.column.data"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s missing", name)
		}
	}
}

func TestPositionRoundTrip(t *testing.T) {
	tests := []struct {
		pos  position
		want source.Position
	}{
		{position{lsn: 0x16B3748}, "lsn:0/16B3748"},
		{position{lsn: 0x1_0000_0010}, "lsn:1/10"},
		{position{snapshot: true, lsn: 0x16B3748}, "snapshot:0/16B3748:"},
		{position{snapshot: true, lsn: 0x16B3748, lastKey: "ev-1", hasKey: true}, "snapshot:0/16B3748:=ev-1"},
		{position{snapshot: true, lsn: 1, lastKey: "a:b/c d%", hasKey: true}, "snapshot:0/1:=a:b%2Fc%20d%25"},
		{position{snapshot: true, lsn: 1, lastKey: "", hasKey: true}, "snapshot:0/1:="},
	}
	for _, tt := range tests {
		if got := tt.pos.encode(); got != tt.want {
			t.Errorf("encode(%+v) = %q, want %q", tt.pos, got, tt.want)
		}
		back, err := parsePosition(tt.want)
		if err != nil {
			t.Errorf("parse(%q): %v", tt.want, err)
			continue
		}
		if back != tt.pos {
			t.Errorf("parse(%q) = %+v, want %+v", tt.want, back, tt.pos)
		}
	}
	for _, bad := range []source.Position{"", "0/1", "lsn:zz", "snapshot:0/1", "snapshot:0/1:x", "page:abc"} {
		if _, err := parsePosition(bad); err == nil {
			t.Errorf("parse(%q): got no error", bad)
		}
	}
}

func TestParseTime(t *testing.T) {
	want := time.Date(2024, 1, 2, 3, 4, 5, 123_000_000, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2024-01-02 03:04:05.123+00", want},
		{"2024-01-02 03:04:05.123456+00", want},
		{"2024-01-02 05:04:05.123+02", want},
		{"2024-01-02 08:34:05.123+05:30", want},
		{"2024-01-02 03:04:05.123", want},
		{"2024-01-02 03:04:05+00", want.Truncate(time.Second)},
	}
	for _, tt := range tests {
		got, err := parseTime(tt.in)
		if err != nil || !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("parseTime(%q) = %v, %v; want %v UTC", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseTime("infinity"); err == nil {
		t.Error("parseTime(infinity): got no error")
	}
}

// TestParseUTCTimeAgreesWithTimeParse compares the fast path with the
// general layouts on generated values: every form it accepts must give the
// layouts' result, and it must refuse what they refuse.
func TestParseUTCTimeAgreesWithTimeParse(t *testing.T) {
	slow := func(s string) (time.Time, bool) {
		for _, l := range timeLayouts {
			if v, err := time.Parse(l, s); err == nil {
				return v.UTC().Truncate(time.Millisecond), true
			}
		}
		return time.Time{}, false
	}
	rng := rand.New(rand.NewPCG(1, 2))
	base := []string{
		"2024-02-29 23:59:59", "2023-02-29 00:00:00", "2024-13-01 00:00:00", "2024-00-10 00:00:00",
		"2024-04-31 12:00:00", "2024-01-01 24:00:00", "2024-01-01 00:60:00", "2024-01-01 00:00:60",
		"0001-01-01 00:00:00", "9999-12-31 23:59:59", "2024-1-01 00:00:00", "2024-01-01T00:00:00",
		"2024-01-01 00:00:0a", "",
	}
	suffixes := []string{"", ".", ".1", ".123", ".123456", ".1234567891", "+00", "+00:00", "+01", "-00", "Z", ".5+00", ".999999+00:00", " ", "+0"}
	cases := 0
	check := func(s string) {
		cases++
		fast, ok := parseUTCTime(s)
		want, wantOK := slow(s)
		if ok && (!wantOK || !fast.Equal(want) || fast.Location() != time.UTC) {
			t.Errorf("parseUTCTime(%q) = %v; time.Parse gives %v, %v", s, fast, want, wantOK)
		}
		if got, err := parseTime(s); (err == nil) != wantOK || (wantOK && !got.Equal(want)) {
			t.Errorf("parseTime(%q) = %v, %v; want %v, ok %v", s, got, err, want, wantOK)
		}
	}
	for _, b := range base {
		for _, suf := range suffixes {
			check(b + suf)
		}
	}
	for i := 0; i < 20000; i++ {
		v := time.Unix(rng.Int64N(400*365*86400)-100*365*86400, rng.Int64N(1e9)).UTC()
		check(v.Format("2006-01-02 15:04:05.999999") + suffixes[rng.IntN(len(suffixes))])
	}
	// The fast path must take the form PostgreSQL prints, or it is no faster.
	if _, ok := parseUTCTime("2024-01-02 03:04:05.123456+00"); !ok {
		t.Error("the fast path refused the UTC session's own form")
	}
	t.Logf("%d inputs compared", cases)
}

func TestToEvent(t *testing.T) {
	s := &Source{cfg: DefaultConfig()}
	s.cfg.Tenant = "default-tenant"
	row := tuple{v: rowValues{fLocator: "L1", fRequestID: "R", fTenant: "", fFlavor: "classic", fType: "policy.issue",
		fOccurredAt: "2024-01-02 03:04:05.123+00", fData: `{"a":  1}`}, null: 1 << fTenant}
	ev := s.toEvent(&row, 42)
	got := []any{ev.Locator, ev.RequestID, ev.Tenant, ev.Flavor, ev.Type, string(ev.Data), ev.Seq, ev.Reject}
	want := []any{"L1", "R", "default-tenant", "classic", "policy.issue", `{"a":  1}`, uint64(42), ""}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d: got %v, want %v", i, got[i], want[i])
		}
	}
	s.cfg.Flavor = "suite"
	if ev := s.toEvent(&row, 1); ev.Flavor != "suite" {
		t.Errorf("configured flavor: got %q, want suite", ev.Flavor)
	}
	if n := s.Stats().Rejects; n != 0 {
		t.Errorf("rejects after valid rows: %d", n)
	}
}

// TestToEventRejects: a row that cannot be read as an event is delivered as
// a reject, never dropped: the reason names the columns, Data holds the
// row's raw values (null for NULL), the other fields what could be read.
func TestToEventRejects(t *testing.T) {
	s := &Source{cfg: DefaultConfig()}
	s.cfg.Tenant = "default-tenant"
	s.cfg.Columns.Username = "" // unmapped: not in the raw row
	valid := tuple{v: rowValues{fLocator: "L1", fRequestID: "R", fTenant: "t1", fFlavor: "suite", fType: "policy.issue",
		fOccurredAt: "2024-01-02 03:04:05.123+00", fData: `{"a": "<&>"}`}}
	tests := []struct {
		name       string
		mod        func(*tuple)
		reason     []string // substrings of Event.Reject
		raw        string   // Event.Data
		locator    string
		timeIsRead bool
	}{
		{"invalid JSON text", func(r *tuple) { r.v[fData] = "{not json" }, []string{"invalid_json: data column data is not valid JSON"},
			`{"locator":"L1","request_id":"R","user_locator":"","transaction_id":"","tenant":"t1","flavor":"suite","type":"policy.issue","occurred_at":"2024-01-02 03:04:05.123+00","data":"{not json"}`, "L1", true},
		{"NULL locator", func(r *tuple) { r.v[fLocator] = ""; r.null |= 1 << fLocator }, []string{"missing_field: locator column locator is NULL"},
			`{"locator":null,"request_id":"R","user_locator":"","transaction_id":"","tenant":"t1","flavor":"suite","type":"policy.issue","occurred_at":"2024-01-02 03:04:05.123+00","data":"{\"a\": \"<&>\"}"}`, "", true},
		{"empty type and NULL time", func(r *tuple) { r.v[fType] = ""; r.v[fOccurredAt] = ""; r.null |= 1 << fOccurredAt },
			[]string{"missing_field: type column type is empty", "time column occurred_at is NULL"},
			`{"locator":"L1","request_id":"R","user_locator":"","transaction_id":"","tenant":"t1","flavor":"suite","type":"","occurred_at":null,"data":"{\"a\": \"<&>\"}"}`, "L1", false},
		{"unreadable time", func(r *tuple) { r.v[fOccurredAt] = "yesterday" }, []string{"bad_time: time column occurred_at is not a readable timestamp"},
			`{"locator":"L1","request_id":"R","user_locator":"","transaction_id":"","tenant":"t1","flavor":"suite","type":"policy.issue","occurred_at":"yesterday","data":"{\"a\": \"<&>\"}"}`, "L1", false},
		{"unchanged TOASTed data", func(r *tuple) { r.v[fData] = ""; r.toast |= 1 << fData }, []string{"other: column data is an unchanged TOASTed value", "REPLICA IDENTITY FULL"},
			`{"locator":"L1","request_id":"R","user_locator":"","transaction_id":"","tenant":"t1","flavor":"suite","type":"policy.issue","occurred_at":"2024-01-02 03:04:05.123+00"}`, "L1", true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			row := valid
			tt.mod(&row)
			ev := s.toEvent(&row, 7)
			for _, w := range tt.reason {
				if !strings.Contains(ev.Reject, w) {
					t.Errorf("Reject %q lacks %q", ev.Reject, w)
				}
			}
			if string(ev.Data) != tt.raw {
				t.Errorf("Data:\n got %s\nwant %s", ev.Data, tt.raw)
			}
			if !json.Valid(ev.Data) {
				t.Errorf("Data is not JSON: %s", ev.Data)
			}
			if ev.Locator != tt.locator || ev.Seq != 7 || ev.Flavor != source.FlavorPostgres || ev.Tenant != "t1" {
				t.Errorf("fields: locator %q seq %d flavor %q tenant %q", ev.Locator, ev.Seq, ev.Flavor, ev.Tenant)
			}
			if got := !ev.Timestamp.IsZero(); got != tt.timeIsRead {
				t.Errorf("timestamp read: got %v (%v), want %v", got, ev.Timestamp, tt.timeIsRead)
			}
			if got := s.Stats().Rejects; got != uint64(i+1) {
				t.Errorf("Stats().Rejects: got %d, want %d", got, i+1)
			}
		})
	}
	if got := s.Stats().UnchangedToast; got != 1 {
		t.Errorf("Stats().UnchangedToast: got %d, want 1", got)
	}
}

func TestParseSetting(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"60s", time.Minute}, {"1min", time.Minute}, {"5s", 5 * time.Second}, {"1500ms", 1500 * time.Millisecond},
		{"0", 0}, {"250", 250 * time.Millisecond}, {"2h", 2 * time.Hour}, {"1d", 24 * time.Hour}, {"100us", 100 * time.Microsecond},
	}
	for _, tt := range tests {
		got, err := parseSetting(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseSetting(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "s", "5 fortnights", "1.5s"} {
		if _, err := parseSetting(bad); err == nil {
			t.Errorf("parseSetting(%q): got no error", bad)
		}
	}
}

// TestSpillKeepsNullsAndToast: a streamed transaction's rows come back from
// the spill file with their NULL and unchanged-TOAST sets, so that a reject
// replayed from disk reads as one read from the wire.
func TestSpillKeepsNullsAndToast(t *testing.T) {
	sp, err := newSpill(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.remove()
	rows := []tuple{
		{v: rowValues{fLocator: "a", fData: "{}"}, null: 1 << fTenant},
		{v: rowValues{fLocator: "b"}, toast: 1 << fData, null: 1<<fType | 1<<fFlavor},
		{v: rowValues{fLocator: "c", fData: strings.Repeat("x", 300)}},
	}
	for i := range rows {
		if err := sp.append(uint32(10+i), &rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	sp.abortSub(12)
	var got []tuple
	if err := sp.replay(func(r *tuple) error { got = append(got, *r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != rows[0] || got[1] != rows[1] {
		t.Errorf("replayed %+v, want the first two of %+v", got, rows)
	}
}
