package pgrepl

import (
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tributary-cdc/tributary/internal/testenv"
)

// cluster is a private PostgreSQL cluster, for tests that restart the server
// or need another wal_level, without disturbing the shared test server.
type cluster struct {
	bin, dir, osUser string
	opts             string // the server options it was started with
	DSN              string
}

// startCluster initdb's and starts a cluster with the given wal_level; it is
// stopped and removed at the test's end.
func startCluster(t testing.TB, walLevel string) *cluster {
	t.Helper()
	testenv.PostgresAdminDSN(t) // fail or skip like every PostgreSQL test when the test bed is absent
	bin := os.Getenv(testenv.EnvPostgresBin)
	if bin == "" {
		testenv.Missing(t, testenv.EnvPostgresBin+" is not set")
	}
	c := &cluster{bin: bin, osUser: os.Getenv(testenv.EnvPostgresUser)}
	dir, err := os.MkdirTemp("", "pgrepl-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	c.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if c.osUser != "" {
		u, err := user.Lookup(c.osUser)
		if err != nil {
			t.Fatalf("look up %s: %v", c.osUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "-t", "20", "stop")
		os.RemoveAll(dir)
	})
	if err := c.run("initdb", "-D", c.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c wal_level=%s -c max_wal_senders=10 -c max_replication_slots=10 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB", port, dir, walLevel)
	c.opts = opts
	if err := c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		t.Fatalf("start cluster: %v\n%s", err, log)
	}
	c.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return c
}

func (c *cluster) data() string { return filepath.Join(c.dir, "data") }

// stop stops the cluster (fast shutdown: connections are cut); start starts
// it again on the same port.
func (c *cluster) stop() error {
	return c.run("pg_ctl", "-D", c.data(), "-m", "fast", "-w", "-t", "60", "stop")
}

func (c *cluster) start() error {
	return c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60", "-o", c.opts, "start")
}

// restart restarts the cluster (fast shutdown: connections are cut).
func (c *cluster) restart() error {
	return c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "server.log"), "-m", "fast", "-w", "-t", "60", "restart")
}

func (c *cluster) run(name string, args ...string) error {
	path := filepath.Join(c.bin, name)
	var cmd *osexec.Cmd
	if c.osUser != "" && os.Geteuid() == 0 {
		cmd = osexec.Command("runuser", append([]string{"-u", c.osUser, "--", path}, args...)...)
	} else {
		cmd = osexec.Command(path, args...)
	}
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}
