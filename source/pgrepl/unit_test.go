package pgrepl

import (
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
	v := rowValues{fLocator: "L1", fRequestID: "R", fTenant: "", fFlavor: "classic", fType: "policy.issue",
		fOccurredAt: "2024-01-02 03:04:05.123+00", fData: `{"a":  1}`}
	ev, err := s.toEvent(&v, 42)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{ev.Locator, ev.RequestID, ev.Tenant, ev.Flavor, ev.Type, string(ev.Data), ev.Seq}
	want := []any{"L1", "R", "default-tenant", "classic", "policy.issue", `{"a":  1}`, uint64(42)}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d: got %v, want %v", i, got[i], want[i])
		}
	}
	s.cfg.Flavor = "suite"
	if ev, _ := s.toEvent(&v, 1); ev.Flavor != "suite" {
		t.Errorf("configured flavor: got %q, want suite", ev.Flavor)
	}
	v[fData] = "{not json"
	if _, err := s.toEvent(&v, 1); err == nil {
		t.Error("invalid JSON in a text column: got no error")
	}
}
