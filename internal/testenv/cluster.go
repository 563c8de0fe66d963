package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Environment variables of the ClickHouse clusters scripts/testbed.sh starts
// (unless --no-cluster): the nodes, comma separated, each host:port=folder.
const (
	EnvCluster1x2 = "TRIBUTARY_TEST_CLUSTER_1X2" // tributary_1x2: one shard, two replicas
	EnvCluster2x1 = "TRIBUTARY_TEST_CLUSTER_2X1" // tributary_2x1: two shards, one replica each
)

// ClusterNode is one ClickHouse 18.16 server of a test cluster. The test bed
// runs it under a supervisor that starts it again after it dies, unless the
// file "hold" exists in its folder.
type ClusterNode struct {
	Addr string // host:port of the native protocol
	Dir  string // the node's folder (config.xml, pid, hold, log/)
}

// PID returns the node's current process id (0 when unknown).
func (n *ClusterNode) PID() int {
	b, err := os.ReadFile(filepath.Join(n.Dir, "pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// CPU returns the CPU time the node's current process has used.
func (n *ClusterNode) CPU() time.Duration { return ProcessCPU(n.PID()) }

// Kill SIGKILLs the node and keeps it down until Start; it returns once the
// node's port refuses connections.
func (n *ClusterNode) Kill(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(n.Dir, "hold"), nil, 0o644); err != nil {
		t.Fatalf("hold node %s: %v", n.Addr, err)
	}
	pid := n.PID()
	if pid == 0 {
		t.Fatalf("node %s has no pid file", n.Addr)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL node %s (pid %d): %v", n.Addr, pid, err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
	}
	t.Fatalf("node %s still accepts connections 30 s after SIGKILL", n.Addr)
}

// Start lets the supervisor start the node again and waits until it answers
// a query.
func (n *ClusterNode) Start(t testing.TB) {
	t.Helper()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
}

func (n *ClusterNode) start() error {
	if err := os.Remove(filepath.Join(n.Dir, "hold")); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("release node %s: %v", n.Addr, err)
	}
	var last error
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		conn, err := openClickHouse(n.Addr, "", nil)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err = conn.Ping(ctx)
			cancel()
			conn.Close()
		}
		if err == nil {
			return nil
		}
		last = err
	}
	return fmt.Errorf("node %s does not answer 90 s after its restart: %v", n.Addr, last)
}

// ClickHouseCluster is a private database on one of the test bed's clusters.
// The database does not exist yet: tributary creates it ON CLUSTER. At the
// test's end every node is started again (if a test killed one) and the
// database dropped ON CLUSTER.
type ClickHouseCluster struct {
	Name     string // tributary_1x2 or tributary_2x1, as in remote_servers
	Shards   int
	Nodes    []*ClusterNode
	Database string
}

// Cluster returns a private database on the test bed's cluster name
// ("tributary_1x2" or "tributary_2x1"); a missing cluster fails under
// CI=true and skips otherwise.
func Cluster(t testing.TB, name string) *ClickHouseCluster {
	t.Helper()
	env, shards := EnvCluster1x2, 1
	if name == "tributary_2x1" {
		env, shards = EnvCluster2x1, 2
	}
	spec := os.Getenv(env)
	if spec == "" {
		Missing(t, fmt.Sprintf("the ClickHouse cluster %s is missing (%s is not set; scripts/testbed.sh starts it unless --no-cluster)", name, env))
	}
	c := &ClickHouseCluster{Name: name, Shards: shards, Database: Name("t_")}
	for _, part := range strings.Split(spec, ",") {
		addr, dir, ok := strings.Cut(part, "=")
		if !ok {
			t.Fatalf("%s: %q is not host:port=folder", env, part)
		}
		c.Nodes = append(c.Nodes, &ClusterNode{Addr: addr, Dir: dir})
	}
	for _, n := range c.Nodes {
		if _, err := legVersion(n.Addr); err != nil {
			Missing(t, fmt.Sprintf("the ClickHouse cluster %s: node %s does not answer: %v", name, n.Addr, err))
		}
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			if err := n.start(); err != nil {
				t.Errorf("cleanup: %v", err)
				return
			}
		}
		conn, err := openClickHouse(c.Nodes[0].Addr, "", nil)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+c.Database+" ON CLUSTER "+c.Name); err != nil {
			t.Errorf("cleanup: drop database %s on cluster %s: %v", c.Database, c.Name, err)
		}
	})
	return c
}

// Addrs returns the nodes' native addresses, comma separated.
func (c *ClickHouseCluster) Addrs() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return strings.Join(addrs, ",")
}

// Flags returns the flags that point tributary at the cluster: every node's
// address, the database and --clickhouse.cluster.
func (c *ClickHouseCluster) Flags() []string {
	return []string{"--clickhouse.addr", c.Addrs(), "--clickhouse.database", c.Database, "--clickhouse.cluster", c.Name}
}

// Open returns a connection to node i (in no database), closed at the
// test's end.
func (c *ClickHouseCluster) Open(t testing.TB, i int) driver.Conn {
	t.Helper()
	conn, err := openClickHouse(c.Nodes[i].Addr, "", nil)
	if err != nil {
		t.Fatalf("open ClickHouse node %s: %v", c.Nodes[i].Addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// SyncReplicas waits until every replicated table of the database on node i
// has fetched what the other replicas wrote (SYSTEM SYNC REPLICA).
func (c *ClickHouseCluster) SyncReplicas(t testing.TB, conn driver.Conn) {
	t.Helper()
	ctx := Context(t, 3*time.Minute)
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine LIKE 'Replicated%'", c.Database)
	if err != nil {
		t.Fatalf("replicated tables of %s: %v", c.Database, err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	rows.Close()
	for _, n := range names {
		if err := conn.Exec(ctx, "SYSTEM SYNC REPLICA "+c.Database+"."+n); err != nil {
			t.Fatalf("SYSTEM SYNC REPLICA %s.%s: %v", c.Database, n, err)
		}
	}
}

// OpenAddr opens a connection to the ClickHouse server at addr (no database,
// no settings); the caller closes it.
func OpenAddr(addr string) (driver.Conn, error) { return openClickHouse(addr, "", nil) }
