package testenv

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// A leg is one way the ClickHouse tests meet a server: the legacy server
// (Debian's 18.16), the modern one (26.7), and the modern one again with
// compatibility=23.8, so that 23.x defaults are exercised too. Every test
// that talks to ClickHouse runs once per leg (ForEachClickHouse).
type leg struct {
	kind     string            // "legacy" or "modern": the first part of the subtest's name
	env      string            // the variable holding the server's native address
	pidEnv   string            // the variable holding its process id, if the test bed started it
	settings map[string]string // session settings every connection of the leg sends
	suffix   string            // the end of the subtest's name, after the version
	testOnly bool              // not run by benchmarks
}

var legs = []leg{
	{kind: "legacy", env: EnvClickHouseAddr, pidEnv: EnvClickHousePID},
	{kind: "modern", env: EnvClickHouseModernAddr, pidEnv: EnvClickHouseModernPID},
	{kind: "modern", env: EnvClickHouseModernAddr, pidEnv: EnvClickHouseModernPID,
		settings: map[string]string{"compatibility": "23.8"}, suffix: "-compat-23.8", testOnly: true},
}

// EnvClickHousePID holds the process id of the legacy server the test bed started.
const EnvClickHousePID = "TRIBUTARY_TEST_CLICKHOUSE_PID"

// ClickHouseServer is a private database on one leg's ClickHouse server.
type ClickHouseServer struct {
	Leg      string            // the subtest's name: legacy-18.16, modern-26.7, modern-26.7-compat-23.8
	Addr     string            // host:port of the native protocol
	Version  string            // what SELECT version() answered
	Settings map[string]string // session settings of this leg (nil for most): pass them to every connection
	PID      int               // the server's process id when the test bed started it, else 0
	Database string            // created for this test, dropped at its end
	Conn     driver.Conn       // a connection whose default database is Database, with Settings
}

// FromTestBed reports whether scripts/testbed.sh started the server, so that
// its users exist: tributary (password tributary-secret) on both servers,
// and on the modern one async (async_insert=1, wait_for_async_insert=0,
// flushed after 10 s) and compat (compatibility=23.8).
func (s *ClickHouseServer) FromTestBed() bool { return s.PID != 0 }

// CPU returns the CPU time the server has used so far, when the test bed
// started it, else -1.
func (s *ClickHouseServer) CPU() time.Duration {
	if s.PID == 0 {
		return -1
	}
	return ProcessCPU(s.PID)
}

// Modern reports whether the server is 21.8 or newer, the first version
// tributary's sink writes in its modern dialect (DateTime64, LowCardinality).
func (s *ClickHouseServer) Modern() bool { return VersionAtLeast(s.Version, 21, 8) }

// VersionAtLeast reports whether a ClickHouse version string ("18.16.1",
// "26.7.2.1") is at least major.minor.
func VersionAtLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(parts[1])
	return ma > major || ma == major && mi >= minor
}

// Flags returns the command-line flags that point tributary at this server
// and database, with the leg's session settings.
func (s *ClickHouseServer) Flags() []string { return s.FlagsVia(s.Addr, s.Database) }

// FlagsVia is Flags with another address (a proxy in front of the server)
// and database.
func (s *ClickHouseServer) FlagsVia(addr, db string) []string {
	f := []string{"--clickhouse.addr", addr, "--clickhouse.database", db}
	if len(s.Settings) > 0 {
		f = append(f, "--clickhouse.settings", SettingsFlag(s.Settings))
	}
	return f
}

// SettingsFlag renders settings as the value of --clickhouse.settings
// (name=value pairs, comma separated, in name order).
func SettingsFlag(settings map[string]string) string {
	pairs := make([]string, 0, len(settings))
	for k, v := range settings {
		pairs = append(pairs, k+"="+v)
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

// Open returns a new connection to the server with the leg's settings, in
// database db ("" for the server's default); it is closed at the test's end.
func (s *ClickHouseServer) Open(t testing.TB, db string) driver.Conn {
	t.Helper()
	conn, err := openClickHouse(s.Addr, db, s.Settings)
	if err != nil {
		t.Fatalf("open ClickHouse %s: %v", s.Addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func openClickHouse(addr, db string, settings map[string]string) (driver.Conn, error) {
	opts := &clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Database: db},
		DialTimeout: 5 * time.Second,
	}
	if len(settings) > 0 {
		opts.Settings = clickhouse.Settings{}
		for k, v := range settings {
			opts.Settings[k] = v
		}
	}
	return clickhouse.Open(opts)
}

// serverVersions caches each address's version: asking once per process is enough.
var serverVersions sync.Map // addr → string

// legVersion returns the version of the server at addr, or an error when it does not answer.
func legVersion(addr string) (string, error) {
	if v, ok := serverVersions.Load(addr); ok {
		return v.(string), nil
	}
	conn, err := openClickHouse(addr, "", nil)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return "", err
	}
	serverVersions.Store(addr, v)
	return v, nil
}

// majorMinor returns "18.16" of "18.16.1".
func majorMinor(version string) string {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return version
	}
	return parts[0] + "." + parts[1]
}

// Runner is *testing.T or *testing.B: what ForEachClickHouse runs subtests of.
type Runner[T any] interface {
	testing.TB
	Run(name string, f func(T)) bool
}

// ForEachClickHouse runs fn once per ClickHouse leg, as subtests named
// legacy-18.16, modern-26.7 and modern-26.7-compat-23.8 (benchmarks run the
// first two), each with a fresh private database on that server. A leg whose
// server is missing fails under CI=true and is skipped otherwise.
func ForEachClickHouse[T Runner[T]](t T, fn func(T, *ClickHouseServer)) {
	t.Helper()
	_, bench := any(t).(*testing.B)
	for _, l := range legs {
		if l.testOnly && bench {
			continue
		}
		addr := os.Getenv(l.env)
		name, version, problem := l.kind, "", ""
		switch v, err := legVersion(addr); {
		case addr == "":
			problem = fmt.Sprintf("the %s ClickHouse is missing (%s is not set)", l.kind, l.env)
		case err != nil:
			problem = fmt.Sprintf("the %s ClickHouse at %s does not answer: %v", l.kind, addr, err)
		default:
			version = v
			name = l.kind + "-" + majorMinor(v) + l.suffix
		}
		t.Run(name, func(t T) {
			if problem != "" {
				Missing(t, problem)
			}
			pid, _ := strconv.Atoi(os.Getenv(l.pidEnv))
			srv := &ClickHouseServer{Leg: name, Addr: addr, Version: version, Settings: l.settings, PID: pid}
			srv.Database = Name("t_")
			srv.Conn = createDatabase(t, srv)
			fn(t, srv)
		})
	}
}

// createDatabase creates srv.Database and returns a connection to it; the
// database is dropped when the test ends.
func createDatabase(t testing.TB, srv *ClickHouseServer) driver.Conn {
	t.Helper()
	admin, err := openClickHouse(srv.Addr, "", srv.Settings)
	if err != nil {
		t.Fatalf("open ClickHouse %s: %v", srv.Addr, err)
	}
	ctx := Context(t, 30*time.Second)
	if err := admin.Exec(ctx, "CREATE DATABASE "+srv.Database); err != nil {
		admin.Close()
		t.Fatalf("create ClickHouse database %s on %s: %v", srv.Database, srv.Leg, err)
	}
	conn, err := openClickHouse(srv.Addr, srv.Database, srv.Settings)
	if err != nil {
		admin.Close()
		t.Fatalf("open ClickHouse database %s: %v", srv.Database, err)
	}
	t.Cleanup(func() {
		conn.Close()
		// Three minutes: after a test of many small INSERTs (the kill
		// tests), 18.16 takes over 30 s to drop a database's parts on a
		// loaded machine.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+srv.Database); err != nil {
			t.Errorf("drop ClickHouse database %s: %v", srv.Database, err)
		}
		admin.Close()
	})
	return conn
}
