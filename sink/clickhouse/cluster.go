package clickhouse

import (
	"context"
	"fmt"
	"strings"

	"github.com/tributary-cdc/tributary/mapping"
)

// DefaultReplicaPath is the ZooKeeper (or Keeper) path of a replicated
// table's replicas. tributary replaces {database} and {table} itself (18.16
// does not know these macros); {shard}, {replica} and any other macro are the
// servers' own (<macros> in their configuration).
const DefaultReplicaPath = "/clickhouse/tables/{shard}/{database}/{table}"

// DistributedSuffix names the Distributed table over each table of a cluster:
// events_all reads (and, with several shards, writes) every shard's events.
const DistributedSuffix = "_all"

// CheckpointShard replaces {shard} in the checkpoint table's replica path:
// the checkpoint table is one replicated table across every node of the
// cluster, whatever the shard, so that a position survives the loss of any
// node and every node reads the same one.
const CheckpointShard = "all"

// Cluster says how tables are created on a ClickHouse cluster. The zero value
// is a single server: plain ReplacingMergeTree tables, no ON CLUSTER.
type Cluster struct {
	// Name is the cluster's name in the servers' <remote_servers>.
	Name string
	// ReplicaPath is the ZooKeeper path template of replicated tables
	// (DefaultReplicaPath when empty).
	ReplicaPath string
}

// Enabled reports whether c names a cluster.
func (c Cluster) Enabled() bool { return c.Name != "" }

// OnCluster returns " ON CLUSTER name", or "" on a single server.
func (c Cluster) OnCluster() string {
	if !c.Enabled() {
		return ""
	}
	return " ON CLUSTER " + quoteIdent(c.Name)
}

// path returns the replica path of database.table with {database} and
// {table} replaced (and {shard} too when shard is not empty).
func (c Cluster) path(database, table, shard string) string {
	p := c.ReplicaPath
	if p == "" {
		p = DefaultReplicaPath
	}
	r := []string{"{database}", database, "{table}", table}
	if shard != "" {
		r = append(r, "{shard}", shard)
	}
	return strings.NewReplacer(r...).Replace(p)
}

// ColumnComments reports whether tables in dialect d carry column comments
// on c: not replicated tables on legacy servers, since 18.16 then refuses to
// create them ("Table structure in ZooKeeper is too different from local
// table structure": it compares the comments too, and writes them without).
func (c Cluster) ColumnComments(d Dialect) bool { return !c.Enabled() || d == Modern }

// Engine returns the engine clause of database.table versioned by version:
// ReplacingMergeTree(version) on a single server,
// ReplicatedReplacingMergeTree('path', '{replica}', version) on a cluster.
func (c Cluster) Engine(database, table, version string) string {
	return c.engine(database, table, version, "")
}

// CheckpointEngine is Engine for the checkpoint table, replicated across
// every node of the cluster (see CheckpointShard).
func (c Cluster) CheckpointEngine(database, table, version string) string {
	return c.engine(database, table, version, CheckpointShard)
}

func (c Cluster) engine(database, table, version, shard string) string {
	if !c.Enabled() {
		return fmt.Sprintf("ReplacingMergeTree(%s)", version)
	}
	return fmt.Sprintf("ReplicatedReplacingMergeTree(%s, '{replica}', %s)", quoteString(c.path(database, table, shard)), version)
}

// ShardingKey returns the expression that places a row of t on a shard: a
// hash of the tenant and the event's locator, so that an event's rows in
// every table (its event_policies and policy_status_changes rows, its
// rejects) live on the event's shard, and a replayed event lands where it
// landed before.
func ShardingKey(t mapping.Table) string {
	has := map[string]bool{}
	for _, col := range t.Columns {
		has[col.Name] = true
	}
	var key []string
	if has["tenant"] {
		key = append(key, "tenant")
	}
	for _, name := range []string{"event_locator", "locator"} {
		if has[name] {
			key = append(key, name)
			break
		}
	}
	if len(key) == 0 {
		return "rand()"
	}
	return "cityHash64(" + strings.Join(key, ", ") + ")"
}

// renderDistributed returns the CREATE TABLE of t's Distributed table.
func renderDistributed(t mapping.Table, database string, c Cluster) string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s%s AS %s.%s\nENGINE = Distributed(%s, %s, %s, %s)",
		quoteIdent(database), quoteIdent(t.Name+DistributedSuffix), c.OnCluster(),
		quoteIdent(database), quoteIdent(t.Name),
		quoteIdent(c.Name), quoteIdent(database), quoteIdent(t.Name), ShardingKey(t))
}

// ClusterShape is what system.clusters says about a cluster, as seen from the
// server tributary is connected to.
type ClusterShape struct {
	Shards, Hosts int
}

// clusterShape reads the cluster's shards and hosts from system.clusters; a
// cluster the server does not know is a permanent error.
func (s *Sink) clusterShape(ctx context.Context) (ClusterShape, error) {
	var shards, hosts uint64
	if err := s.conn.QueryRow(ctx, "SELECT uniqExact(shard_num), count() FROM system.clusters WHERE cluster = ?", s.cfg.Cluster).Scan(&shards, &hosts); err != nil {
		return ClusterShape{}, fmt.Errorf("read cluster %s from system.clusters: %w", s.cfg.Cluster, err)
	}
	if hosts == 0 {
		return ClusterShape{}, permanent("--clickhouse.cluster: the server does not know a cluster %q (system.clusters; <remote_servers> in its configuration)", s.cfg.Cluster)
	}
	return ClusterShape{Shards: int(shards), Hosts: int(hosts)}, nil
}
