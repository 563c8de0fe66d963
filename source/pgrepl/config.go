// Package pgrepl reads events from a PostgreSQL table through logical
// replication (the pgoutput plugin, via github.com/jackc/pglogrepl): it creates
// or reuses a publication and a replication slot, copies the rows already in
// the table under the slot's exported snapshot, then streams inserts and
// updates, acknowledging to the server only what the pipeline has made
// durable. See docs/postgres.md.
package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// ColumnMap names the table's column for each event field. An optional field
// whose column name is empty is left empty in every event.
type ColumnMap struct {
	Locator       string // required; unique per event (the primary key in the emulator's table)
	RequestID     string
	UserLocator   string
	Username      string
	TransactionID string
	Tenant        string
	Flavor        string
	Type          string // required
	OccurredAt    string // required; timestamptz or timestamp (read as UTC)
	Data          string // required; json (exact bytes) or text
}

// Config configures the PostgreSQL source.
type Config struct {
	DSN               string        // connection string of the database holding the table (URL or key=value)
	Table             string        // the events table, optionally schema-qualified
	Publication       string        // the publication to read (created when absent and CreatePublication is set)
	Slot              string        // the logical replication slot (created when absent and CreateSlot is set)
	CreatePublication bool          // create the publication when it does not exist
	CreateSlot        bool          // create the slot when it does not exist
	Snapshot          bool          // copy the rows already in the table before streaming
	Columns           ColumnMap     // the table's column for each event field
	StatusInterval    time.Duration // how often a standby status update goes out; at most half of wal_sender_timeout (checked at Open)
	LagInterval       time.Duration // how often the slot's lag is sampled for Stats
	Tenant            string        // tenant of rows whose tenant column is empty or absent
	Flavor            string        // Event.Flavor of every event; empty: the row's flavor column, else "postgres"
	Stream            bool          // ask for protocol v2 streaming of large in-progress transactions (PostgreSQL 14+)
	DecodingWorkMem   string        // logical_decoding_work_mem of the walsender session ("" = server setting); above it transactions stream or spill
	SpillDir          string        // where streamed in-progress transactions are buffered ("" = the system temp folder)

	replParams map[string]string                                                 // extra settings of the replication session (tests)
	dial       func(ctx context.Context, network, addr string) (net.Conn, error) // replaces the network (tests)
}

// DefaultConfig returns the defaults, the one place they are set. Column names
// match the emulator's socotra_events table.
func DefaultConfig() Config {
	return Config{
		Table:             "socotra_events",
		Publication:       "tributary_pub",
		Slot:              "tributary_slot",
		CreatePublication: true,
		CreateSlot:        true,
		Snapshot:          true,
		Columns: ColumnMap{
			Locator:       "locator",
			RequestID:     "request_id",
			UserLocator:   "user_locator",
			Username:      "username",
			TransactionID: "transaction_id",
			Tenant:        "tenant",
			Flavor:        "flavor",
			Type:          "type",
			OccurredAt:    "occurred_at",
			Data:          "data",
		},
		StatusInterval: 10 * time.Second,
		LagInterval:    15 * time.Second,
		Stream:         true,
	}
}

// RegisterFlags adds the source's flags to fs, with c's values as defaults.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.DSN, "pg.dsn", c.DSN, "PostgreSQL connection string of the database holding the events table (postgres://user@host:5432/db)")
	fs.StringVar(&c.Table, "pg.table", c.Table, "events table, optionally schema-qualified (schema.table)")
	fs.StringVar(&c.Publication, "pg.publication", c.Publication, "publication to read from")
	fs.StringVar(&c.Slot, "pg.slot", c.Slot, "logical replication slot (pgoutput)")
	fs.BoolVar(&c.CreatePublication, "pg.create-publication", c.CreatePublication, "create the publication FOR TABLE --pg.table when it does not exist")
	fs.BoolVar(&c.CreateSlot, "pg.create-slot", c.CreateSlot, "create the replication slot when it does not exist")
	fs.BoolVar(&c.Snapshot, "pg.snapshot", c.Snapshot, "copy the rows already in the table before streaming changes")
	cols := []struct {
		field *string
		name  string
		what  string
	}{
		{&c.Columns.Locator, "locator", "column of the event locator (unique; required)"},
		{&c.Columns.RequestID, "request-id", "column of the request id (empty: none)"},
		{&c.Columns.UserLocator, "user-locator", "column of the user locator (empty: none)"},
		{&c.Columns.Username, "username", "column of the username (empty: none)"},
		{&c.Columns.TransactionID, "transaction-id", "column of the transaction id (empty: none)"},
		{&c.Columns.Tenant, "tenant", "column of the tenant locator (empty: none, --pg.tenant is used)"},
		{&c.Columns.Flavor, "flavor", "column of the event flavor, suite or classic (empty: none)"},
		{&c.Columns.Type, "type", "column of the event type (required)"},
		{&c.Columns.OccurredAt, "occurred-at", "column of the event time, timestamptz or timestamp in UTC (required)"},
		{&c.Columns.Data, "data", "column of the event payload, json or text (required)"},
	}
	for _, col := range cols {
		fs.StringVar(col.field, "pg.column."+col.name, *col.field, col.what)
	}
	fs.DurationVar(&c.StatusInterval, "pg.status-interval", c.StatusInterval, "interval of standby status updates to the server, also while the pipeline is stalled; at most half of the server's wal_sender_timeout (checked at start)")
	fs.DurationVar(&c.LagInterval, "pg.lag-interval", c.LagInterval, "interval at which the slot's lag is sampled")
	fs.StringVar(&c.Tenant, "pg.tenant", c.Tenant, "tenant of rows whose tenant column is empty or absent")
	fs.StringVar(&c.Flavor, "pg.flavor", c.Flavor, "flavor of every event (suite, classic or postgres); empty: the row's flavor column, else postgres")
	fs.BoolVar(&c.Stream, "pg.stream", c.Stream, "stream large in-progress transactions (protocol v2, PostgreSQL 14+), buffered on disk until they commit")
	fs.StringVar(&c.DecodingWorkMem, "pg.decoding-work-mem", c.DecodingWorkMem, "logical_decoding_work_mem of the replication session, such as 64MB (empty: the server's)")
	fs.StringVar(&c.SpillDir, "pg.spill-dir", c.SpillDir, "folder for buffering streamed transactions until they commit (empty: the system temp folder)")
	// The source no longer reconnects by itself: the pipeline retries a
	// lost connection (--pipeline.retry-max). The flag stays, hidden, so
	// that existing command lines and environments still start.
	fs.Duration("pg.reconnect-max", 10*time.Second, "no effect: the pipeline retries a lost PostgreSQL connection (--pipeline.retry-max)")
	_ = fs.MarkDeprecated("pg.reconnect-max", "it has no effect: the pipeline retries a lost PostgreSQL connection with backoff up to --pipeline.retry-max")
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*$`)

// Validate returns every problem of c at once, without connecting.
func (c Config) Validate() error {
	var errs []error
	if c.DSN == "" {
		errs = append(errs, errors.New("--pg.dsn is required"))
	} else if err := checkDSN(c.DSN); err != nil {
		errs = append(errs, err)
	}
	if _, _, err := splitTable(c.Table); err != nil {
		errs = append(errs, err)
	}
	for _, n := range []struct{ flag, v string }{{"--pg.publication", c.Publication}, {"--pg.slot", c.Slot}} {
		if !identRE.MatchString(n.v) || len(n.v) > 63 {
			errs = append(errs, fmt.Errorf("%s %q must be a plain identifier (letters, digits, _; at most 63 bytes)", n.flag, n.v))
		}
	}
	for _, n := range []struct{ flag, v string }{{"--pg.publication", c.Publication}, {"--pg.slot", c.Slot}} {
		if strings.ToLower(n.v) != n.v || strings.Contains(n.v, "$") {
			errs = append(errs, fmt.Errorf("%s %q must be lower case letters, digits and _", n.flag, n.v))
		}
	}
	required := map[string]string{"locator": c.Columns.Locator, "type": c.Columns.Type, "occurred-at": c.Columns.OccurredAt, "data": c.Columns.Data}
	for _, name := range []string{"locator", "type", "occurred-at", "data"} {
		if required[name] == "" {
			errs = append(errs, fmt.Errorf("--pg.column.%s is required", name))
		}
	}
	seen := map[string]string{}
	for _, f := range c.columnFields() {
		if f.column == "" {
			continue
		}
		if prev, ok := seen[f.column]; ok {
			errs = append(errs, fmt.Errorf("--pg.column.%s and --pg.column.%s both name column %q", prev, f.flag, f.column))
		}
		seen[f.column] = f.flag
	}
	if c.StatusInterval < 100*time.Millisecond || c.StatusInterval > 5*time.Minute {
		errs = append(errs, fmt.Errorf("--pg.status-interval must be between 100ms and 5m (and at most half of wal_sender_timeout), got %s", c.StatusInterval))
	}
	if c.LagInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--pg.lag-interval must be at least 100ms, got %s", c.LagInterval))
	}
	switch c.Flavor {
	case "", "suite", "classic", "postgres":
	default:
		errs = append(errs, fmt.Errorf("--pg.flavor must be suite, classic, postgres or empty, got %q", c.Flavor))
	}
	if c.DecodingWorkMem != "" && !regexp.MustCompile(`^[0-9]+\s*(kB|MB|GB|TB)?$`).MatchString(c.DecodingWorkMem) {
		errs = append(errs, fmt.Errorf("--pg.decoding-work-mem %q must be a size such as 64kB or 64MB", c.DecodingWorkMem))
	}
	return errors.Join(errs...)
}

type columnField struct {
	flag   string
	column string
}

// columnFields lists the mapped columns in the fixed order rowValues uses.
func (c Config) columnFields() []columnField {
	m := c.Columns
	return []columnField{
		{"locator", m.Locator}, {"request-id", m.RequestID}, {"user-locator", m.UserLocator},
		{"username", m.Username}, {"transaction-id", m.TransactionID}, {"tenant", m.Tenant},
		{"flavor", m.Flavor}, {"type", m.Type}, {"occurred-at", m.OccurredAt}, {"data", m.Data},
	}
}

// Indexes of columnFields.
const (
	fLocator = iota
	fRequestID
	fUserLocator
	fUsername
	fTransactionID
	fTenant
	fFlavor
	fType
	fOccurredAt
	fData
	numFields
)

// splitTable splits "schema.table" (or "table", schema public) and checks both parts.
func splitTable(t string) (schema, table string, err error) {
	schema, table = "public", t
	if i := strings.IndexByte(t, '.'); i >= 0 {
		schema, table = t[:i], t[i+1:]
	}
	if !identRE.MatchString(schema) || !identRE.MatchString(table) {
		return "", "", fmt.Errorf("--pg.table %q must be table or schema.table with plain identifiers", t)
	}
	return schema, table, nil
}

func checkDSN(dsn string) error {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if _, err := url.Parse(dsn); err != nil {
			return fmt.Errorf("--pg.dsn is not a valid URL: %w", err)
		}
		return nil
	}
	if !strings.Contains(dsn, "=") {
		return errors.New("--pg.dsn must be a postgres:// URL or key=value pairs")
	}
	return nil
}
