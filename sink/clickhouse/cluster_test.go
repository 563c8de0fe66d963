package clickhouse

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/emulator"
	"github.com/tributary-cdc/tributary/internal/testenv"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/source"
)

// clusterRows maps n emulator events (suite flavor) with the production mapping.
func clusterRows(t *testing.T, n int) (*mapping.Rows, int) {
	t.Helper()
	emu, err := emulator.New(emulator.Config{Flavor: emulator.FlavorSuite, Seed: 13, Events: n, Policies: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	var evs []source.Event
	for _, e := range emu.Events() {
		evs = append(evs, source.Event{Locator: e.Locator, RequestID: e.RequestID, UserLocator: e.UserLocator,
			Tenant: e.Tenant, Type: e.Type, Timestamp: e.Timestamp, Data: e.Data, Flavor: source.FlavorSuite,
			Seq: uint64(e.Timestamp.UnixMilli())})
	}
	rows := mapping.NewRows()
	mapping.Map(source.Batch{Events: evs}, mapping.Options{Pipeline: "cluster"}, rows)
	return rows, len(evs)
}

func newClusterSink(t *testing.T, c *testenv.ClickHouseCluster, addrs ...string) *Sink {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = addrs
	cfg.Database = c.Database
	cfg.Cluster = c.Name
	s, err := New(testenv.Context(t, 30*time.Second), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestClusterOneShard: on one shard of two replicas, the schema is created on
// both (ON CLUSTER, replicated), rows written through one replica are on
// the other, written twice they count once, and a sink on the second replica
// finds the schema in place.
func TestClusterOneShard(t *testing.T) {
	c := testenv.Cluster(t, "tributary_1x2")
	ctx := testenv.Context(t, 5*time.Minute)
	rows, n := clusterRows(t, 3000)
	s := newClusterSink(t, c, c.Nodes[0].Addr)
	if err := s.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if s.Dialect() != Legacy {
		t.Fatalf("dialect %s on 18.16", s.Dialect())
	}
	for range 2 { // a replay: the same block again
		if err := s.Write(ctx, rows); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	other := c.Open(t, 1)
	c.SyncReplicas(t, other)
	for _, tbl := range []string{"events", "event_policies", "policy_status_changes"} {
		var engine string
		if err := other.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?", c.Database, tbl).Scan(&engine); err != nil {
			t.Fatalf("%s on replica b: %v", tbl, err)
		}
		if engine != "ReplicatedReplacingMergeTree" {
			t.Errorf("%s on replica b: engine %s", tbl, engine)
		}
	}
	var got, viaAll uint64
	if err := other.QueryRow(ctx, fmt.Sprintf("SELECT (SELECT count() FROM %[1]s.events FINAL), (SELECT count() FROM %[1]s.events_all FINAL)", c.Database)).Scan(&got, &viaAll); err != nil {
		t.Fatal(err)
	}
	if got != uint64(n) || viaAll != uint64(n) {
		t.Errorf("replica b: %d events, %d through events_all; want %d", got, viaAll, n)
	}
	// The second replica's sink finds everything in place and writes there.
	s2 := newClusterSink(t, c, c.Nodes[1].Addr)
	if err := s2.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		t.Fatalf("Ensure on replica b: %v", err)
	}
	for _, v := range mapping.DefaultSchema().Views {
		var k uint64
		if err := other.QueryRow(ctx, "SELECT count() FROM "+c.Database+"."+v.Name).Scan(&k); err != nil {
			t.Errorf("view %s on replica b: %v", v.Name, err)
		}
	}
}

// TestClusterTwoShards: on two shards, rows go through the Distributed
// tables, land on both shards, each event's child rows on the event's shard,
// and a replay changes nothing.
func TestClusterTwoShards(t *testing.T) {
	c := testenv.Cluster(t, "tributary_2x1")
	ctx := testenv.Context(t, 5*time.Minute)
	rows, n := clusterRows(t, 3000)
	s := newClusterSink(t, c, c.Nodes[0].Addr, c.Nodes[1].Addr)
	if err := s.Ensure(ctx, mapping.DefaultSchema()); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	for range 2 {
		if err := s.Write(ctx, rows); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	var total uint64
	for i := range c.Nodes {
		conn := c.Open(t, i)
		var local, all, stray uint64
		q := fmt.Sprintf(`SELECT
			(SELECT count() FROM %[1]s.events FINAL),
			(SELECT count() FROM %[1]s.events_all FINAL),
			(SELECT count() FROM %[1]s.event_policies FINAL WHERE event_locator NOT IN (SELECT locator FROM %[1]s.events))
			+ (SELECT count() FROM %[1]s.policy_status_changes FINAL WHERE event_locator NOT IN (SELECT locator FROM %[1]s.events))`, c.Database)
		if err := conn.QueryRow(ctx, q).Scan(&local, &all, &stray); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		t.Logf("shard %d: %d events; %d through events_all", i+1, local, all)
		if local == 0 || local == uint64(n) {
			t.Errorf("shard %d holds %d of %d events: the sharding key does not spread them", i+1, local, n)
		}
		if all != uint64(n) {
			t.Errorf("events_all on node %d: %d events, want %d", i, all, n)
		}
		if stray != 0 {
			t.Errorf("shard %d: %d child rows whose event is on another shard", i+1, stray)
		}
		total += local
	}
	if total != uint64(n) {
		t.Errorf("shards hold %d events together, want %d", total, n)
	}
	// Every view reads the whole cluster: each node gives the same rows.
	for _, v := range mapping.DefaultSchema().Views {
		var counts []uint64
		for i := range c.Nodes {
			var k uint64
			if err := c.Open(t, i).QueryRow(ctx, "SELECT count() FROM "+c.Database+"."+v.Name).Scan(&k); err != nil {
				t.Errorf("view %s on node %d: %v", v.Name, i, err)
			}
			counts = append(counts, k)
		}
		if counts[0] != counts[1] {
			t.Errorf("view %s: %d rows on node 0, %d on node 1, want the same", v.Name, counts[0], counts[1])
		}
	}
}

// TestDegradedWhenAnAddressIsDown: with a dead address listed first, the
// sink connects through the next one, writes, and says it is degraded,
// naming the dead address; with only live addresses it is not.
func TestDegradedWhenAnAddressIsDown(t *testing.T) {
	testenv.ForEachClickHouse(t, func(t *testing.T, ch *testenv.ClickHouseServer) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := l.Addr().String()
		l.Close()
		ctx := testenv.Context(t, time.Minute)
		s := newTestSink(t, ch, func(c *Config) { c.Addr = []string{dead, ch.Addr} })
		if err := s.Ensure(ctx, testSchema()); err != nil {
			t.Fatalf("Ensure through the second address: %v", err)
		}
		if err := s.Write(ctx, rowsOf(10, time.Now())); err != nil {
			t.Fatalf("Write: %v", err)
		}
		d := s.Degraded()
		if len(d) != 1 || !strings.Contains(d[0], dead) || !strings.Contains(d[0], "refused") {
			t.Errorf("Degraded() = %q, want one reason naming %s", d, dead)
		}
		live := newTestSink(t, ch, func(c *Config) { c.Addr = []string{ch.Addr, ch.Addr} })
		if err := live.Ensure(ctx, testSchema()); err != nil {
			t.Fatal(err)
		}
		if d := live.Degraded(); d != nil {
			t.Errorf("Degraded() with every address live = %q", d)
		}
	})
}
