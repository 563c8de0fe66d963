// Package testenv is the one place tests get their ClickHouse and PostgreSQL
// servers. `make test` starts private servers (scripts/testbed.sh) and passes
// their addresses in TRIBUTARY_TEST_* environment variables; each test gets its
// own randomly named database, dropped with t.Cleanup.
//
// When a server is missing, the test fails under CI=true and skips otherwise,
// with a message naming what is missing and how to provide it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables set by scripts/testbed.sh.
const (
	EnvClickHouseAddr       = "TRIBUTARY_TEST_CLICKHOUSE_ADDR"        // ClickHouse 18.16
	EnvClickHouseModernAddr = "TRIBUTARY_TEST_CLICKHOUSE_MODERN_ADDR" // a modern server (26.7)
	EnvClickHouseModernPID  = "TRIBUTARY_TEST_CLICKHOUSE_MODERN_PID"  // its process, when the test bed started it
	EnvPostgresDSN          = "TRIBUTARY_TEST_PG_DSN"
	EnvPostgresBin          = "TRIBUTARY_TEST_PG_BIN"
	EnvPostgresData         = "TRIBUTARY_TEST_PG_DATA"
	EnvPostgresUser         = "TRIBUTARY_TEST_PG_USER"
)

// InCI reports whether the tests run under CI=true, where a missing server is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing fails the test under CI=true and skips it otherwise, naming what is missing.
func Missing(t testing.TB, what string) {
	t.Helper()
	msg := fmt.Sprintf("%s; run the tests through `make test`, which starts the servers (scripts/testbed.sh)", what)
	if InCI() {
		t.Fatalf("CI=true and %s", msg)
	}
	t.Skip(msg)
}

// Name returns prefix followed by 12 random hex digits: a valid, unique
// identifier for a database, table, slot or publication.
func Name(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// Context returns a context cancelled at the test's end or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// PostgresServer is a private database on the test PostgreSQL cluster.
type PostgresServer struct {
	AdminDSN string    // superuser DSN of the cluster's postgres database
	DSN      string    // superuser DSN of Database
	Database string    // created for this test, dropped at its end
	Conn     *pgx.Conn // a connection to Database
	Bin      string    // the folder of the server's binaries (pg_ctl, pg_recvlogical)
	DataDir  string    // the cluster's data folder
	OSUser   string    // the OS user that owns the cluster ("" for the current user)
}

// PostgresAdminDSN returns the superuser DSN of the test cluster, or fails/skips.
func PostgresAdminDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvPostgresDSN)
	if dsn == "" {
		Missing(t, "PostgreSQL is missing ("+EnvPostgresDSN+" is not set)")
	}
	return dsn
}

// Postgres creates a randomly named database on the test cluster and returns a
// connection to it. At the test's end the replication slots of that database
// are dropped (their senders terminated first) and then the database itself.
func Postgres(t testing.TB) *PostgresServer {
	t.Helper()
	admin := PostgresAdminDSN(t)
	ctx := Context(t, 30*time.Second)
	ac, err := pgx.Connect(ctx, admin)
	if err != nil {
		Missing(t, fmt.Sprintf("PostgreSQL at %s does not answer: %v", admin, err))
	}
	defer ac.Close(context.Background())
	db := Name("t_")
	if _, err := ac.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("create PostgreSQL database %s: %v", db, err)
	}
	dsn, err := WithDatabase(admin, db)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to PostgreSQL database %s: %v", db, err)
	}
	t.Cleanup(func() {
		conn.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("cleanup: connect to PostgreSQL: %v", err)
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, db)
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err = c.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, db)
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("cleanup: drop replication slots of %s: %v", db, err)
		}
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
			t.Errorf("cleanup: drop PostgreSQL database %s: %v", db, err)
		}
	})
	return &PostgresServer{
		AdminDSN: admin, DSN: dsn, Database: db, Conn: conn,
		Bin: os.Getenv(EnvPostgresBin), DataDir: os.Getenv(EnvPostgresData), OSUser: os.Getenv(EnvPostgresUser),
	}
}

// WithDatabase returns dsn (a postgres:// URL) pointing at database db instead.
func WithDatabase(dsn, db string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		return "", fmt.Errorf("testenv: %s is not a postgres:// URL", dsn)
	}
	u.Path = "/" + db
	return u.String(), nil
}

// ReplicationDSN returns dsn with replication=database, for a logical-replication connection.
func ReplicationDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	q := u.Query()
	q.Set("replication", "database")
	u.RawQuery = q.Encode()
	return u.String()
}
