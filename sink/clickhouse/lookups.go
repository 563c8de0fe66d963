package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// LookupsTable is the table that keeps the enrichment's resolved look-ups
// (an invoice's, payment's or delinquency's policy locators) across
// restarts, so that a replay does not ask the API again for what it already
// answered.
const LookupsTable = "_tributary_lookups"

// lookupsColumns are the look-up table's columns: definition, comment.
var lookupsColumns = [...][2]string{
	{"tenant String", "Tenant locator the look-up was made for."},
	{"key String", "The entity looked up: invoice/LOCATOR, payment/LOCATOR or delinquency/LOCATOR."},
	{"policies Array(String)", "Policy locators of the entity, sorted, as the billing look-ups resolved them."},
	{"fetched_at DateTime('UTC')", "When the look-up was answered (the newest copy wins)."},
}

// LookupsDDL returns the statement that creates the look-up table in
// database: like the checkpoint table, one table replicated across every
// node of cluster c (ON CLUSTER), or a ReplacingMergeTree without one.
func LookupsDDL(database string, c Cluster) string {
	cols := make([]string, len(lookupsColumns))
	for i, col := range lookupsColumns {
		cols[i] = col[0]
		if !c.Enabled() { // 18.16 refuses replicated tables with column comments
			cols[i] += " COMMENT '" + col[1] + "'"
		}
	}
	return "CREATE TABLE IF NOT EXISTS " + database + "." + LookupsTable + c.OnCluster() + " (\n    " +
		strings.Join(cols, ",\n    ") + "\n)\nENGINE = " + c.CheckpointEngine(database, LookupsTable, "fetched_at") + "\nORDER BY (tenant, key)"
}

// LookupStore keeps resolved look-ups of one tenant in LookupsTable. It
// connects on first use (one attempt per call, classified like the sink's
// errors), creates the table when it is missing, and is safe for concurrent
// use.
type LookupStore struct {
	cfg    Config
	tenant string

	mu             sync.Mutex
	snk            *Sink
	ensured        bool
	insertSettings clickhouse.Settings
}

// NewLookupStore returns a store for tenant's look-ups in cfg.Database.
func NewLookupStore(cfg Config, tenant string) *LookupStore {
	return &LookupStore{cfg: cfg, tenant: tenant}
}

func (s *LookupStore) table() string { return s.cfg.Database + "." + LookupsTable }

// connLocked connects and ensures the table, once.
func (s *LookupStore) connLocked(ctx context.Context) (driver.Conn, error) {
	if s.snk == nil {
		snk, err := New(ctx, s.cfg, nil)
		if err != nil {
			return nil, fmt.Errorf("connect to ClickHouse for look-ups: %w", err)
		}
		s.snk = snk
	}
	conn := s.snk.Conn()
	if s.ensured {
		return conn, nil
	}
	pinned, err := InsertSettings(ctx, conn)
	if err != nil {
		return nil, classifyErr(err)
	}
	// DDL only when something is missing, so that a user without CREATE
	// privileges works on a schema created beforehand (tributary schema).
	var dbs, tables uint64
	if err := conn.QueryRow(ctx, "SELECT (SELECT count() FROM system.databases WHERE name = ?), (SELECT count() FROM system.tables WHERE database = ? AND name = ?)",
		s.cfg.Database, s.cfg.Database, LookupsTable).Scan(&dbs, &tables); err != nil {
		return nil, classifyErr(fmt.Errorf("look up table %s: %w", s.table(), err))
	}
	cluster := s.cfg.ClusterSpec()
	if dbs == 0 {
		if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+s.cfg.Database+cluster.OnCluster()); err != nil {
			return nil, classifyErr(fmt.Errorf("create database %s: %w", s.cfg.Database, err))
		}
	}
	if tables == 0 {
		if err := conn.Exec(ctx, LookupsDDL(s.cfg.Database, cluster)); err != nil {
			return nil, classifyErr(fmt.Errorf("create look-up table %s: %w", s.table(), err))
		}
	}
	s.ensured, s.insertSettings = true, pinned
	return conn, nil
}

// Get returns the stored policy lists of those of keys the table holds.
func (s *LookupStore) Get(ctx context.Context, keys []string) (map[string][]string, error) {
	out := map[string][]string{}
	if len(keys) == 0 {
		return out, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	conn, err := s.connLocked(ctx)
	if err != nil {
		return nil, err
	}
	// One placeholder per key: 18.16 does not take an array for IN.
	args := make([]any, 0, len(keys)+1)
	args = append(args, s.tenant)
	for _, k := range keys {
		args = append(args, k)
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(keys)), ", ")
	rows, err := conn.Query(ctx, "SELECT key, policies FROM "+s.table()+" FINAL WHERE tenant = ? AND key IN ("+marks+")", args...)
	if err != nil {
		return nil, classifyErr(fmt.Errorf("read stored look-ups from %s: %w", s.table(), err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			key  string
			pols []string
		)
		if err := rows.Scan(&key, &pols); err != nil {
			return nil, fmt.Errorf("read stored look-ups from %s: %w", s.table(), err)
		}
		out[key] = pols
	}
	if err := rows.Err(); err != nil {
		return nil, classifyErr(fmt.Errorf("read stored look-ups from %s: %w", s.table(), err))
	}
	return out, nil
}

// Put stores look-ups (key → sorted policy locators) in one INSERT; it
// returns once ClickHouse has them.
func (s *LookupStore) Put(ctx context.Context, entries map[string][]string) error {
	if len(entries) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	conn, err := s.connLocked(ctx)
	if err != nil {
		return err
	}
	if len(s.insertSettings) > 0 {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(s.insertSettings))
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+s.table()+" (tenant, key, policies, fetched_at)")
	if err != nil {
		return classifyErr(fmt.Errorf("prepare look-up insert: %w", err))
	}
	defer batch.Close()
	now := time.Now().UTC().Truncate(time.Second)
	for key, pols := range entries {
		if pols == nil {
			pols = []string{}
		}
		if err := batch.Append(s.tenant, key, pols, now); err != nil {
			return fmt.Errorf("append look-up row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return classifyErr(fmt.Errorf("store %d look-ups in %s: %w", len(entries), s.table(), err))
	}
	return nil
}

// Close closes the store's connection, if any.
func (s *LookupStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snk == nil {
		return nil
	}
	err := s.snk.Close()
	s.snk, s.ensured = nil, false
	return err
}
