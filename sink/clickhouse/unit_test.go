package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/cli"
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/mapping"
)

func TestDialectOf(t *testing.T) {
	tests := []struct {
		version string
		want    Dialect
		wantErr bool
	}{
		{"18.16.1", Legacy, false},
		{"19.17.6.36", Legacy, false},
		{"20.3.21.2", Legacy, false},
		{"21.7.11.3", Legacy, false},
		{"21.8.15.7", Modern, false},
		{"23.3.1", Modern, false},
		{"25.10.1.1", Modern, false},
		{"garbage", "", true},
		{"x.y.z", "", true},
	}
	for _, tt := range tests {
		got, err := DialectOf(tt.version)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("DialectOf(%q) = %q, %v; want %q, error %v", tt.version, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		edit  func(c *Config)
		wants []string // substrings of the error; none: valid
	}{
		{"defaults", func(c *Config) {}, nil},
		{"password file", func(c *Config) { c.PasswordFile = pwFile }, nil},
		{"tls", func(c *Config) { c.TLS = true; c.TLSServerName = "x.clickhouse.cloud" }, nil},
		{"every problem at once", func(c *Config) {
			c.Addr = []string{"nohost"}
			c.Database = "bad-name"
			c.PasswordFile = filepath.Join(dir, "missing")
			c.Password = "p"
			c.BatchRows = 0
			c.Dialect = "ancient"
			c.Settings = map[string]string{"async_insert": "1", "bad name": "x"}
		}, []string{"--clickhouse.addr", "--clickhouse.database", "exclusive", "--clickhouse.password-file", "--clickhouse.batch-rows", "--clickhouse.dialect",
			"async_insert is pinned to 0", `"bad name" is not a setting name`}},
		{"tls options without tls", func(c *Config) { c.TLSInsecureSkipVerify = true }, []string{"need --clickhouse.tls"}},
		{"no address", func(c *Config) { c.Addr = nil }, []string{"at least one address"}},
		{"cluster", func(c *Config) { c.Cluster = "prod-eu.1"; c.ReplicaPath = "/ch/{uuid}/{shard}/{table}" }, nil},
		{"bad cluster name", func(c *Config) { c.Cluster = "a b" }, []string{"--clickhouse.cluster", "not a cluster name"}},
		{"relative replica path", func(c *Config) { c.Cluster = "c"; c.ReplicaPath = "tables/{table}" }, []string{"must start with /"}},
		{"quote in replica path", func(c *Config) { c.Cluster = "c"; c.ReplicaPath = "/t/'{table}" }, []string{"quote"}},
		{"replica path without table", func(c *Config) { c.Cluster = "c"; c.ReplicaPath = "/t/{shard}" }, []string{"lacks {table}"}},
		{"replica path without cluster", func(c *Config) { c.ReplicaPath = "/t/{table}" }, []string{"needs --clickhouse.cluster"}},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.edit(&c)
		err := c.Validate()
		if len(tt.wants) == 0 {
			if err != nil {
				t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: Validate() = nil, want errors %q", tt.name, tt.wants)
			continue
		}
		for _, w := range tt.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: Validate() = %v, want it to mention %q", tt.name, err, w)
			}
		}
	}
}

func TestClusterDDLPieces(t *testing.T) {
	c := Cluster{Name: "prod", ReplicaPath: "/clickhouse/tables/{shard}/{database}/{table}"}
	if got, want := c.Engine("db", "events", "_version"), `ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/events', '{replica}', _version)`; got != want {
		t.Errorf("Engine = %s, want %s", got, want)
	}
	if got, want := c.CheckpointEngine("db", "_tributary_checkpoints", "seq"), `ReplicatedReplacingMergeTree('/clickhouse/tables/all/db/_tributary_checkpoints', '{replica}', seq)`; got != want {
		t.Errorf("CheckpointEngine = %s, want %s", got, want)
	}
	if got := (Cluster{}).Engine("db", "events", "_version"); got != "ReplacingMergeTree(_version)" {
		t.Errorf("single-server Engine = %s", got)
	}
	if (Cluster{}).OnCluster() != "" || c.OnCluster() != " ON CLUSTER prod" {
		t.Errorf("OnCluster: %q, %q", (Cluster{}).OnCluster(), c.OnCluster())
	}
	// Every table's rows are placed by the event they belong to.
	want := map[string]string{
		mapping.TableEvents:              "cityHash64(tenant, locator)",
		mapping.TableEventPolicies:       "cityHash64(tenant, event_locator)",
		mapping.TablePolicyStatusChanges: "cityHash64(tenant, event_locator)",
		mapping.TableRejects:             "cityHash64(tenant, event_locator)",
	}
	for _, tbl := range mapping.DefaultSchema().Tables {
		if got := ShardingKey(tbl); got != want[tbl.Name] {
			t.Errorf("ShardingKey(%s) = %s, want %s", tbl.Name, got, want[tbl.Name])
		}
	}
	if c.ColumnComments(Legacy) || !c.ColumnComments(Modern) || !(Cluster{}).ColumnComments(Legacy) {
		t.Error("ColumnComments: legacy replicated tables must have none, every other table its comments")
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	var c Config
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.RegisterFlags(fs)
	// A deprecated flag is still accepted (and ignored), so that old
	// deployments start.
	if err := fs.Parse([]string{"--clickhouse.addr=a:9440,b:9440", "--clickhouse.tls", "--clickhouse.max-retries=2", "--clickhouse.write-timeout=7s"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TRIBUTARY_CLICKHOUSE_PASSWORD": "from-env", "TRIBUTARY_CLICKHOUSE_WRITE_TIMEOUT": "9s", "TRIBUTARY_CLICKHOUSE_SETTINGS": "compatibility=23.8"}
	if err := cli.ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(c.Addr, ","), "a:9440,b:9440"; got != want {
		t.Errorf("Addr = %q, want %q", got, want)
	}
	if got, want := c.Password, "from-env"; got != want {
		t.Errorf("Password = %q, want %q", got, want)
	}
	if got, want := c.WriteTimeout, 7*time.Second; got != want {
		t.Errorf("WriteTimeout = %s, want %s (a set flag wins)", got, want)
	}
	if got, want := fmt.Sprint(c.Settings), "map[compatibility:23.8]"; got != want {
		t.Errorf("Settings = %s, want %s (from the environment)", got, want)
	}
	if got, want := c.Database, "tributary"; got != want {
		t.Errorf("Database = %q, want the default %q", got, want)
	}
	if !c.CreateSchema {
		t.Error("CreateSchema = false, want the default true")
	}
	opts, err := c.options()
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLS == nil || opts.Auth.Password != "from-env" || opts.Protocol != clickhouse.Native {
		t.Errorf("options: TLS %v, password %q, protocol %v; want TLS, the password, native", opts.TLS, opts.Auth.Password, opts.Protocol)
	}
}

func TestPasswordFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.PasswordFile = p
	got, err := c.password()
	if err != nil || got != "s3cret" {
		t.Errorf("password() = %q, %v; want %q", got, err, "s3cret")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	const transient, permanentKind, poisonKind = "transient", "permanent", "poison"
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"too many parts", fmt.Errorf("send: %w", &clickhouse.Exception{Code: 252}), transient},
		{"memory limit", &clickhouse.Exception{Code: 241}, transient},
		{"server timeout", &clickhouse.Exception{Code: 159}, transient},
		{"unknown column", &clickhouse.Exception{Code: 16}, permanentKind},
		{"unknown table", &clickhouse.Exception{Code: 60}, permanentKind},
		{"auth", &clickhouse.Exception{Code: 516}, permanentKind},
		{"type mismatch", &clickhouse.Exception{Code: 53}, permanentKind},
		{"cannot parse datetime", &clickhouse.Exception{Code: 41}, poisonKind},
		{"value out of range", fmt.Errorf("send: %w", &clickhouse.Exception{Code: 321}), poisonKind},
		{"connection reset", fmt.Errorf("read: %w", &net.OpError{Op: "read", Err: syscall.ECONNRESET}), transient},
		{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), transient},
		{"eof", fmt.Errorf("read: %w", io.EOF), transient},
		{"net timeout", fmt.Errorf("read: %w", timeoutErr{}), transient},
		{"attempt deadline", fmt.Errorf("send: %w", context.DeadlineExceeded), transient},
		{"bad row", permanent("row 3: got int, want string"), permanentKind},
		{"other", errors.New("something odd"), transient},
	}
	for _, tt := range tests {
		err := classifyErr(tt.err)
		got := transient
		switch {
		case fault.IsPermanent(err):
			got = permanentKind
		case fault.IsPoison(err):
			got = poisonKind
		}
		if got != tt.want {
			t.Errorf("%s: classified %s, want %s", tt.name, got, tt.want)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: the classification hides the error", tt.name)
		}
	}
}

func TestColumnsLegacyTime(t *testing.T) {
	tbl := testSchema().Tables[0]
	var got []string
	for _, c := range columnsOf(tbl, Legacy) {
		got = append(got, c.Name+" "+c.Type)
	}
	want := []string{"id String", "kind String", "ts DateTime('UTC')", "ts_ms UInt16", "n32 UInt32", "flag UInt8",
		"tags Array(String)", "statuses Array(String)", "note Nullable(String)", "ended Nullable(DateTime('UTC'))", "ended_ms UInt16", "version UInt64"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("legacy columns:\n got %q\nwant %q", got, want)
	}
	if got, want := orderBy(tbl, Legacy), "(kind, ts, ts_ms, id)"; got != want {
		t.Errorf("legacy ORDER BY = %s, want %s", got, want)
	}
	if got, want := orderBy(tbl, Modern), "(kind, ts, id)"; got != want {
		t.Errorf("modern ORDER BY = %s, want %s", got, want)
	}
}

func TestQuoting(t *testing.T) {
	tests := []struct{ in, ident, str string }{
		{"events", "events", "'events'"},
		{"odd name", "`odd name`", "'odd name'"},
		{"it's", "`it's`", `'it\'s'`},
		{"back`tick", "`back\\`tick`", "'back`tick'"},
	}
	for _, tt := range tests {
		if got := quoteIdent(tt.in); got != tt.ident {
			t.Errorf("quoteIdent(%q) = %s, want %s", tt.in, got, tt.ident)
		}
		if got := quoteString(tt.in); got != tt.str {
			t.Errorf("quoteString(%q) = %s, want %s", tt.in, got, tt.str)
		}
	}
}

func TestTableDialect(t *testing.T) {
	tbl := testSchema().Tables[0]
	s := &Sink{dialect: Modern}
	legacy := map[string]string{"ts": "DateTime('UTC')", "ts_ms": "UInt16"}
	modern := map[string]string{"ts": "DateTime64(3, 'UTC')"}
	if got := s.tableDialect(tbl, legacy); got != Legacy {
		t.Errorf("modern server, legacy table: dialect %s, want legacy", got)
	}
	if got := s.tableDialect(tbl, modern); got != Modern {
		t.Errorf("modern server, modern table: dialect %s, want modern", got)
	}
}

func TestToColumnsRejectsBadRows(t *testing.T) {
	table := testSchema().Tables[0]
	tw := newTableWriter(table, "db", Legacy)
	good := testRow(1, time.Date(2026, 3, 4, 5, 6, 7, 890e6, time.UTC))

	// Rows of the wrong shape or type never get into Rows.
	r := mapping.NewRows()
	if err := r.Table(table).AppendRow(good[:3]); err == nil || !strings.Contains(err.Error(), "row has 3 values, want 10") {
		t.Errorf("short row: AppendRow error %v", err)
	}
	bad := append([]any(nil), good...)
	bad[0] = 7
	if err := r.Table(table).AppendRow(bad); err == nil || !strings.Contains(err.Error(), "column id: got int, want string") {
		t.Errorf("wrong type: AppendRow error %v", err)
	}
	if n := r.Table(table).Len(); n != 0 {
		t.Errorf("refused rows left %d rows behind", n)
	}

	tests := []struct {
		name string
		rows func() *mapping.TableRows
		want string
	}{
		{"before 1970 on legacy", func() *mapping.TableRows {
			row := append([]any(nil), good...)
			row[2] = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)
			return tableRows(table, row)
		}, "outside what DateTime holds"},
		{"ragged columns", func() *mapping.TableRows {
			tr := tableRows(table, good)
			tr.Values[0].Strings = nil
			return tr
		}, "column id holds 0 values, want 1"},
		{"another column type", func() *mapping.TableRows {
			other := table
			other.Columns = append([]mapping.Column(nil), table.Columns...)
			other.Columns[3].Type = mapping.UInt64
			row := append([]any(nil), good...)
			row[3] = uint64(1)
			return tableRows(other, row)
		}, "column n32: rows hold a UInt64 column, want UInt32"},
		{"fewer columns", func() *mapping.TableRows {
			other := table
			other.Columns = table.Columns[:9]
			return tableRows(other, good[:9])
		}, "rows have 9 columns, want 10"},
	}
	for _, tt := range tests {
		_, err := tw.toColumns(tt.rows())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: toColumns error %v, want it to contain %q", tt.name, err, tt.want)
		}
		// A value out of range refuses the rows (poison); a row of the
		// wrong shape is a bug (permanent).
		if wantPoison := strings.Contains(tt.want, "outside"); fault.IsPoison(err) != wantPoison || fault.IsPermanent(err) == wantPoison {
			t.Errorf("%s: poison %v, permanent %v; want poison %v", tt.name, fault.IsPoison(err), fault.IsPermanent(err), wantPoison)
		}
	}
}

// tableRows returns the rows of table holding rows.
func tableRows(table mapping.Table, rows ...[]any) *mapping.TableRows {
	r := mapping.NewRows()
	for _, row := range rows {
		appendRow(r, table, row)
	}
	return r.Table(table)
}

// testSchema has one column of every logical type; the tests write it.
func testSchema() mapping.Schema {
	return mapping.Schema{
		Tables: []mapping.Table{{
			Name:    "things",
			Comment: "Every logical type, for tests.",
			Columns: []mapping.Column{
				{Name: "id", Type: mapping.String, Comment: "The thing's id."},
				{Name: "kind", Type: mapping.LowString, Comment: "Its kind."},
				{Name: "ts", Type: mapping.Time, Comment: "When it happened."},
				{Name: "n32", Type: mapping.UInt32},
				{Name: "flag", Type: mapping.Bool},
				{Name: "tags", Type: mapping.ArrayString},
				{Name: "statuses", Type: mapping.ArrayLowString},
				{Name: "note", Type: mapping.NullableString, Comment: "It's optional."},
				{Name: "ended", Type: mapping.NullableTime},
				{Name: "version", Type: mapping.UInt64},
			},
			OrderBy:     []string{"kind", "ts", "id"},
			PartitionBy: "toYYYYMM(ts)",
			Version:     "version",
		}},
		Views: []mapping.View{{
			Name:  "things_latest",
			Query: "SELECT id, kind, ts FROM {db}.things FINAL",
		}},
	}
}

// testRow returns a row of testSchema's table.
func testRow(i int, ts time.Time) []any {
	var note *string
	var ended *time.Time
	if i%2 == 0 {
		s := fmt.Sprintf("note %d", i)
		note = &s
		e := ts.Add(1500 * time.Millisecond)
		ended = &e
	}
	return []any{fmt.Sprintf("id-%06d", i), "kind-" + fmt.Sprint(i%3), ts, uint32(i), i%2 == 0,
		[]string{"a", fmt.Sprint(i)}, []string{"onRisk"}, note, ended, uint64(7)}
}

// appendRow appends row to table's rows in r; a row that does not fit the
// table is a mistake in the test itself, so it panics (also in goroutines).
func appendRow(r *mapping.Rows, table mapping.Table, row []any) {
	if err := r.Table(table).AppendRow(row); err != nil {
		panic(err)
	}
}

func TestCompressionAuto(t *testing.T) {
	tests := []struct {
		compression string
		addr        []string
		want        string
	}{
		{"auto", []string{"127.0.0.1:9000"}, "none"},
		{"", []string{"localhost:9000", "[::1]:9000", "127.0.0.2:9000"}, "none"},
		{"auto", []string{"127.0.0.1:9000", "ch2.internal:9000"}, "lz4"},
		{"auto", []string{"10.0.0.5:9000"}, "lz4"},
		{"auto", nil, "lz4"},
		{"lz4", []string{"127.0.0.1:9000"}, "lz4"},
		{"none", []string{"10.0.0.5:9000"}, "none"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		c.Compression, c.Addr = tt.compression, tt.addr
		if got := c.CompressionMethod(); got != tt.want {
			t.Errorf("Compression %q with %v: %s, want %s", tt.compression, tt.addr, got, tt.want)
		}
		if got := c.compression().Method.String(); got != tt.want {
			t.Errorf("Compression %q with %v: driver method %s, want %s", tt.compression, tt.addr, got, tt.want)
		}
	}
	if err := (Config{Compression: "zstd"}).Validate(); err == nil || !strings.Contains(err.Error(), `"zstd" is not auto, lz4 or none`) {
		t.Errorf("Validate(zstd) = %v", err)
	}
}
