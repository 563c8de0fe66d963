package clickhouse

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/spf13/pflag"
)

// Config is everything the sink needs to reach ClickHouse and write to it.
// Build it with DefaultConfig or RegisterFlags, then call Validate.
type Config struct {
	// Addr lists host:port addresses of ClickHouse's native protocol (9000, or 9440 with TLS).
	Addr []string
	// Database holds the tables, views and the checkpoint table.
	Database string
	// User and Password authenticate; PasswordFile, when set, holds the
	// password instead (its content, without a trailing newline).
	User, Password, PasswordFile string
	// TLS turns on TLS (required by ClickHouse Cloud, port 9440).
	TLS bool
	// TLSCAFile is a PEM bundle of the CAs to trust instead of the system pool.
	TLSCAFile string
	// TLSServerName overrides the name checked in the server's certificate.
	TLSServerName string
	// TLSInsecureSkipVerify skips certificate verification (tests only).
	TLSInsecureSkipVerify bool
	// CreateSchema creates the database, tables and views and adds missing
	// columns; when false the sink only checks them and refuses to start if
	// anything is missing.
	CreateSchema bool
	// Dialect forces the DDL dialect ("modern" or "legacy"); "auto" (or
	// empty) detects it from the server's version.
	Dialect string
	// Compression is the native protocol's block compression: "lz4" (for
	// networks), "none" (for a server on the same host, where compressing
	// costs both sides CPU and saves nothing) or "auto" (the default, or
	// empty): none when every address is a loopback one, else lz4.
	Compression string
	// DialTimeout bounds connecting; WriteTimeout bounds one insert attempt.
	DialTimeout, WriteTimeout time.Duration
	// BatchRows is the most rows one INSERT carries; larger inputs are split.
	BatchRows int
	// Cluster, when set, is the name of a cluster in the servers'
	// <remote_servers>: the schema is created ON CLUSTER with replicated
	// tables (and Distributed ones), see Cluster and docs/clickhouse.md.
	Cluster string
	// ReplicaPath is the ZooKeeper path template of the replicated tables
	// (DefaultReplicaPath); it needs Cluster.
	ReplicaPath string
	// Settings are ClickHouse settings sent with every query (name → value),
	// such as compatibility=23.8 or a quota key; the insert settings the
	// sink pins (PinnedInsertSettings) cannot be overridden here.
	Settings map[string]string

	// replicas, when set (by the sink), records each address's connection
	// attempts, for Degraded.
	replicas *replicas

	// OnInsert, when set, is called after each successful INSERT with the
	// table, its row count and the time the successful attempt took.
	OnInsert func(table string, rows int, took time.Duration)
}

// DefaultConfig returns the defaults every flag starts from.
func DefaultConfig() Config {
	return Config{
		Addr:         []string{"127.0.0.1:9000"},
		Database:     "tributary",
		User:         "default",
		CreateSchema: true,
		Dialect:      "auto",
		Compression:  "auto",
		DialTimeout:  10 * time.Second,
		WriteTimeout: 2 * time.Minute,
		BatchRows:    100_000,
		ReplicaPath:  DefaultReplicaPath,
	}
}

// RegisterFlags registers the --clickhouse.* flags on fs, with c's current
// values as defaults; on a zero Config it first applies DefaultConfig. Every flag's environment twin
// (TRIBUTARY_CLICKHOUSE_PASSWORD, …) comes from internal/cli.ApplyEnv.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	if c.Addr == nil && c.Database == "" && c.BatchRows == 0 {
		*c = DefaultConfig()
	}
	fs.StringSliceVar(&c.Addr, "clickhouse.addr", c.Addr, "ClickHouse native-protocol addresses, host:port, comma separated (9440 for TLS)")
	fs.StringVar(&c.Database, "clickhouse.database", c.Database, "ClickHouse database of the tables, views and checkpoints")
	fs.StringVar(&c.User, "clickhouse.user", c.User, "ClickHouse user")
	fs.StringVar(&c.Password, "clickhouse.password", c.Password, "ClickHouse password (prefer --clickhouse.password-file or the environment)")
	fs.StringVar(&c.PasswordFile, "clickhouse.password-file", c.PasswordFile, "file holding the ClickHouse password")
	fs.BoolVar(&c.TLS, "clickhouse.tls", c.TLS, "connect with TLS (ClickHouse Cloud: true, port 9440)")
	fs.StringVar(&c.TLSCAFile, "clickhouse.tls-ca-file", c.TLSCAFile, "PEM file of the CAs that sign the server's certificate (default: the system's)")
	fs.StringVar(&c.TLSServerName, "clickhouse.tls-server-name", c.TLSServerName, "server name expected in the certificate (default: the address's host)")
	fs.BoolVar(&c.TLSInsecureSkipVerify, "clickhouse.tls-insecure-skip-verify", c.TLSInsecureSkipVerify, "do not verify the server's certificate (tests only)")
	fs.BoolVar(&c.CreateSchema, "clickhouse.create-schema", c.CreateSchema, "create the database, tables and views and add missing columns; false: only check them")
	fs.StringVar(&c.Dialect, "clickhouse.dialect", c.Dialect, "DDL dialect: auto (from the server version), modern or legacy")
	fs.StringVar(&c.Compression, "clickhouse.compression", c.Compression, "block compression of the native protocol: lz4, none, or auto (none when every --clickhouse.addr is a loopback address, where compressing only costs CPU on both sides; lz4 otherwise)")
	fs.DurationVar(&c.DialTimeout, "clickhouse.dial-timeout", c.DialTimeout, "timeout of connecting to ClickHouse")
	fs.DurationVar(&c.WriteTimeout, "clickhouse.write-timeout", c.WriteTimeout, "timeout of one insert attempt")
	// The pipeline alone retries now (--pipeline.retry-max); these flags
	// are accepted, and ignored, so that existing deployments still start.
	fs.Int("clickhouse.max-retries", 0, "")
	fs.Duration("clickhouse.retry-backoff", 0, "")
	fs.Duration("clickhouse.retry-max-backoff", 0, "")
	for _, name := range []string{"clickhouse.max-retries", "clickhouse.retry-backoff", "clickhouse.retry-max-backoff"} {
		_ = fs.MarkDeprecated(name, "ignored: the pipeline retries every failed insert with backoff up to --pipeline.retry-max")
	}
	fs.IntVar(&c.BatchRows, "clickhouse.batch-rows", c.BatchRows, "most rows in one INSERT; larger writes are split")
	fs.StringVar(&c.Cluster, "clickhouse.cluster", c.Cluster, "name of the ClickHouse cluster (the servers' remote_servers) to create replicated tables on, ON CLUSTER; empty: a single server")
	fs.StringVar(&c.ReplicaPath, "clickhouse.replica-path", c.ReplicaPath, "ZooKeeper path of the replicated tables with --clickhouse.cluster; tributary fills {database} and {table}, the servers' macros {shard} and the rest")
	fs.StringToStringVar(&c.Settings, "clickhouse.settings", c.Settings, "ClickHouse settings sent with every query, name=value pairs, comma separated (e.g. compatibility=23.8)")
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate returns every problem of c at once. It makes no connection and
// reads no file, but checks that the password file exists.
func (c Config) Validate() error {
	var errs []error
	if len(c.Addr) == 0 {
		errs = append(errs, errors.New("--clickhouse.addr: at least one address is required"))
	}
	for _, a := range c.Addr {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("--clickhouse.addr: %q is not host:port", a))
		}
	}
	if !identRE.MatchString(c.Database) {
		errs = append(errs, fmt.Errorf("--clickhouse.database: %q is not a plain identifier (letters, digits, underscores)", c.Database))
	}
	if c.Password != "" && c.PasswordFile != "" {
		errs = append(errs, errors.New("--clickhouse.password and --clickhouse.password-file are exclusive"))
	}
	if c.PasswordFile != "" {
		if st, err := os.Stat(c.PasswordFile); err != nil {
			errs = append(errs, fmt.Errorf("--clickhouse.password-file: %w", err))
		} else if st.IsDir() {
			errs = append(errs, fmt.Errorf("--clickhouse.password-file: %s is a folder", c.PasswordFile))
		}
	}
	if c.TLSCAFile != "" {
		if !c.TLS {
			errs = append(errs, errors.New("--clickhouse.tls-ca-file needs --clickhouse.tls"))
		}
		if _, err := os.Stat(c.TLSCAFile); err != nil {
			errs = append(errs, fmt.Errorf("--clickhouse.tls-ca-file: %w", err))
		}
	}
	if (c.TLSServerName != "" || c.TLSInsecureSkipVerify) && !c.TLS {
		errs = append(errs, errors.New("--clickhouse.tls-server-name and --clickhouse.tls-insecure-skip-verify need --clickhouse.tls"))
	}
	switch c.Compression {
	case "lz4", "none", "auto", "":
	default:
		errs = append(errs, fmt.Errorf("--clickhouse.compression: %q is not auto, lz4 or none", c.Compression))
	}
	switch c.Dialect {
	case "", "auto", string(Modern), string(Legacy):
	default:
		errs = append(errs, fmt.Errorf("--clickhouse.dialect: %q is not auto, modern or legacy", c.Dialect))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--clickhouse.dial-timeout: %s must be positive", c.DialTimeout))
	}
	if c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--clickhouse.write-timeout: %s must be positive", c.WriteTimeout))
	}
	if c.BatchRows <= 0 {
		errs = append(errs, fmt.Errorf("--clickhouse.batch-rows: %d must be positive", c.BatchRows))
	}
	errs = append(errs, c.validateCluster()...)
	for _, name := range sortedKeys(c.Settings) {
		switch {
		case !identRE.MatchString(name):
			errs = append(errs, fmt.Errorf("--clickhouse.settings: %q is not a setting name", name))
		case PinnedInsertSettings[name] != "":
			errs = append(errs, fmt.Errorf("--clickhouse.settings: %s is pinned to %s by tributary, so that a checkpoint is saved only after ClickHouse has stored the rows", name, PinnedInsertSettings[name]))
		}
	}
	return errors.Join(errs...)
}

// clusterNameRE: the names <remote_servers> allows (an XML element name).
var clusterNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

func (c Config) validateCluster() []error {
	var errs []error
	if c.Cluster != "" && !clusterNameRE.MatchString(c.Cluster) {
		errs = append(errs, fmt.Errorf("--clickhouse.cluster: %q is not a cluster name (letters, digits, _ . -)", c.Cluster))
	}
	p := c.ReplicaPath
	switch {
	case p == "": // DefaultReplicaPath
	case !strings.HasPrefix(p, "/"):
		errs = append(errs, fmt.Errorf("--clickhouse.replica-path: %q must start with /", p))
	case strings.ContainsAny(p, "'\\\n\r\t "):
		errs = append(errs, fmt.Errorf("--clickhouse.replica-path: %q holds a quote, backslash or space", p))
	case !strings.Contains(p, "{table}"):
		errs = append(errs, fmt.Errorf("--clickhouse.replica-path: %q lacks {table}: every table needs a path of its own", p))
	case c.Cluster == "" && p != DefaultReplicaPath:
		errs = append(errs, errors.New("--clickhouse.replica-path needs --clickhouse.cluster"))
	}
	return errs
}

// ClusterSpec returns the cluster the schema is created on (zero: a single server).
func (c Config) ClusterSpec() Cluster {
	if c.Cluster == "" {
		return Cluster{}
	}
	return Cluster{Name: c.Cluster, ReplicaPath: c.ReplicaPath}
}

// password returns the configured password, reading PasswordFile if set.
func (c Config) password() (string, error) {
	if c.PasswordFile == "" {
		return c.Password, nil
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("read ClickHouse password file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// compression returns the driver's compression setting for c.Compression.
func (c Config) compression() *clickhouse.Compression {
	if c.CompressionMethod() == "none" {
		return &clickhouse.Compression{Method: clickhouse.CompressionNone}
	}
	return &clickhouse.Compression{Method: clickhouse.CompressionLZ4}
}

// CompressionMethod resolves Compression to "lz4" or "none": auto (or empty)
// is none when every address is on the loopback interface, lz4 otherwise.
func (c Config) CompressionMethod() string {
	switch c.Compression {
	case "lz4", "none":
		return c.Compression
	}
	for _, a := range c.Addr {
		if !isLoopback(a) {
			return "lz4"
		}
	}
	if len(c.Addr) == 0 {
		return "lz4"
	}
	return "none"
}

// isLoopback reports whether addr (host:port, or a bare host) names the
// loopback interface: localhost, 127.0.0.0/8 or ::1.
func isLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// options builds the driver's options; the database is not selected, so
// that the connection works before the database exists.
func (c Config) options() (*clickhouse.Options, error) {
	pw, err := c.password()
	if err != nil {
		return nil, err
	}
	opts := &clickhouse.Options{
		Protocol:    clickhouse.Native,
		Addr:        c.Addr,
		Auth:        clickhouse.Auth{Username: c.User, Password: pw},
		DialTimeout: c.DialTimeout,
		ReadTimeout: c.WriteTimeout,
		Compression: c.compression(),
		Settings:    c.driverSettings(),
		ClientInfo: clickhouse.ClientInfo{Products: []struct {
			Name    string
			Version string
		}{{Name: "tributary", Version: "1"}}},
	}
	if len(c.Addr) > 1 {
		// Back to the first address within replicaRecheck of its return.
		opts.ConnMaxLifetime = replicaRecheck
	}
	if c.replicas != nil {
		opts.DialStrategy = c.replicas.dialStrategy
	}
	if c.TLS {
		tc := &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         c.TLSServerName,
			InsecureSkipVerify: c.TLSInsecureSkipVerify, //nolint:gosec // an explicit, documented opt-in
		}
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("read ClickHouse CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ClickHouse CA file %s holds no PEM certificate", c.TLSCAFile)
			}
			tc.RootCAs = pool
		}
		opts.TLS = tc
	}
	return opts, nil
}

// driverSettings returns Settings in the driver's form (nil when empty).
func (c Config) driverSettings() clickhouse.Settings {
	if len(c.Settings) == 0 {
		return nil
	}
	out := make(clickhouse.Settings, len(c.Settings))
	for k, v := range c.Settings {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Open connects to ClickHouse over the native protocol and checks the
// connection with a ping. The checkpoint command and chstore use it to get a
// connection without a Sink.
func Open(ctx context.Context, c Config) (driver.Conn, error) {
	opts, err := c.options()
	if err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open ClickHouse %s: %w", strings.Join(c.Addr, ","), err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.DialTimeout)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, withHTTPPortHint(ctx, c, fmt.Errorf("connect to ClickHouse %s as %q: %w", strings.Join(c.Addr, ","), c.User, err))
	}
	return conn, nil
}
