// Package clickhouse is the ClickHouse sink: it detects the server's dialect,
// creates or checks the tables and views of a mapping.Schema, and writes rows
// in batched native-protocol INSERTs that name their columns, retrying
// transient failures. Tables are ReplacingMergeTrees with a deterministic
// version, so writing the same rows again changes nothing visible under FINAL.
package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/sink"
)

var (
	_ sink.Sink     = (*Sink)(nil)
	_ sink.Degrader = (*Sink)(nil)
)

// Sink writes mapped rows to ClickHouse. Ensure must run before Write; Write
// and Stats are safe for concurrent use (each INSERT takes its own connection
// from the driver's pool).
type Sink struct {
	cfg      Config
	conn     driver.Conn
	log      *slog.Logger
	version  string
	dialect  Dialect
	cluster  Cluster      // from cfg: zero on a single server
	replicas *replicas    // each address's last connection attempt
	shape    ClusterShape // the cluster's shards and hosts, read at connect
	// insertSettings are the pinned insert settings the server knows (see
	// PinnedInsertSettings) into every INSERT.
	insertSettings clickhouse.Settings

	mu     sync.Mutex
	tables map[string]*tableWriter // set by Ensure

	inserts, rows, failures atomic.Uint64
	insertNanos             atomic.Int64
}

// Stats counts the sink's work since New.
type Stats struct {
	Inserts    uint64        // successful INSERT statements
	Rows       uint64        // rows those INSERTs carried
	Failures   uint64        // Writes that returned an error
	InsertTime time.Duration // total time of the successful INSERT attempts
}

// New validates cfg, connects to ClickHouse over the native protocol and
// detects the server's version and dialect (unless cfg.Dialect forces one).
// The password is never logged. Failures are classified with internal/fault:
// an invalid configuration or refused credentials are permanent, an
// unreachable server transient.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Sink, error) {
	s, err := NewLazy(cfg, logger)
	if err != nil {
		return nil, err
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// NewLazy validates cfg and returns a sink that connects on its first Ensure
// (one attempt per call), so that a process can start, serve its health
// endpoints and retry while ClickHouse is unreachable.
func NewLazy(cfg Config, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, permanent("invalid ClickHouse configuration: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Sink{cfg: cfg, log: logger, cluster: cfg.ClusterSpec(), replicas: newReplicas()}
	s.cfg.replicas = s.replicas
	return s, nil
}

// connect opens the connection, reads the server's version, dialect and the
// insert settings it knows; it does nothing when already connected.
func (s *Sink) connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		return nil
	}
	cfg := s.cfg
	conn, err := Open(ctx, cfg)
	if err != nil {
		return classifyErr(err) // wrong password: permanent; refused: transient
	}
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		conn.Close()
		return classifyErr(fmt.Errorf("read ClickHouse version: %w", err))
	}
	d, err := DialectOf(version)
	if err != nil {
		conn.Close()
		return fault.Permanent(err)
	}
	if cfg.Dialect != "" && cfg.Dialect != "auto" {
		if d, err = ParseDialect(cfg.Dialect); err != nil {
			conn.Close()
			return fault.Permanent(err)
		}
	}
	pinned, err := InsertSettings(ctx, conn)
	if err != nil {
		conn.Close()
		return classifyErr(err)
	}
	s.conn = conn // clusterShape queries through it
	var shape ClusterShape
	if s.cluster.Enabled() {
		if shape, err = s.clusterShape(ctx); err != nil {
			s.conn = nil
			conn.Close()
			return classifyErr(err)
		}
		if shape.Shards > 1 {
			// Through the Distributed tables, an INSERT returns once every
			// shard has stored its rows, as the checkpoint requires.
			pinned["insert_distributed_sync"] = 1 // a number: 18.16 takes settings in binary, by type
		}
		s.log.Info("ClickHouse cluster", "cluster", cfg.Cluster, "shards", shape.Shards, "hosts", shape.Hosts,
			"writes", map[bool]string{true: "Distributed tables, synchronous", false: "local tables (replication copies them)"}[shape.Shards > 1])
	}
	s.log.Info("connected to ClickHouse", "addr", strings.Join(cfg.Addr, ","), "user", cfg.User,
		"database", cfg.Database, "version", version, "dialect", string(d), "tls", cfg.TLS)
	s.conn, s.version, s.dialect, s.insertSettings, s.shape = conn, version, d, pinned, shape
	return nil
}

// PinnedInsertSettings are the settings every INSERT carries on servers that
// know them, whatever the server's or the user's profile says: an INSERT
// must return only once ClickHouse has stored its rows, since the checkpoint
// saved after it promises exactly that. Modern servers default to
// async_insert=1 (26.x), and a profile may add wait_for_async_insert=0,
// which would acknowledge rows still sitting in a buffer.
var PinnedInsertSettings = map[string]string{
	"async_insert":          "0",
	"wait_for_async_insert": "1",
}

// InsertSettings returns the PinnedInsertSettings that the server behind
// conn knows, for clickhouse.WithSettings on every INSERT (the sink's and the
// checkpoint store's); older servers (18.16 has neither async setting)
// refuse unknown settings.
func InsertSettings(ctx context.Context, conn driver.Conn) (clickhouse.Settings, error) {
	want := PinnedInsertSettings
	names := sortedKeys(want)
	for i, n := range names {
		names[i] = quoteString(n)
	}
	// A literal list: 18.16 does not bind an array parameter to IN.
	rows, err := conn.Query(ctx, "SELECT name FROM system.settings WHERE name IN ("+strings.Join(names, ", ")+")")
	if err != nil {
		return nil, fmt.Errorf("read ClickHouse settings: %w", err)
	}
	defer rows.Close()
	out := clickhouse.Settings{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("read ClickHouse settings: %w", err)
		}
		out[name] = want[name]
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read ClickHouse settings: %w", err)
	}
	return out, nil
}

// Conn returns the sink's connection (nil before it connected), for sharing
// with chstore. It stays valid until Close.
func (s *Sink) Conn() driver.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// Dialect returns the dialect new tables are created in.
func (s *Sink) Dialect() Dialect { return s.dialect }

// ServerVersion returns what the server answered to SELECT version().
func (s *Sink) ServerVersion() string { return s.version }

// Database returns the database the sink writes to.
func (s *Sink) Database() string { return s.cfg.Database }

// Stats returns the counters since New; it is safe for concurrent use.
func (s *Sink) Stats() Stats {
	return Stats{
		Inserts:    s.inserts.Load(),
		Rows:       s.rows.Load(),
		Failures:   s.failures.Load(),
		InsertTime: time.Duration(s.insertNanos.Load()),
	}
}

// Close releases the connection, if any.
func (s *Sink) Close() error {
	conn := s.Conn()
	if conn == nil {
		return nil
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("close ClickHouse connection: %w", err)
	}
	return nil
}
