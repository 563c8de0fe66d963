package clickhouse

import (
	"fmt"
	"strconv"
	"strings"
)

// Dialect is the flavour of DDL and value encoding a ClickHouse server gets.
type Dialect string

// The dialects. Modern is chosen for servers from 21.8 on: DateTime64 exists
// since 20.1 and table comments (CREATE TABLE … COMMENT) since 21.6, and 21.8
// is the first long-term-support release with both. Everything older (18.x,
// 19.x, 20.x, 21.1–21.7) gets Legacy, which stores the same information with
// types 18.16 already has (see docs/clickhouse.md).
const (
	Modern Dialect = "modern"
	Legacy Dialect = "legacy"
)

// ModernSince is the first server version (major, minor) that gets Modern.
var ModernSince = [2]int{21, 8}

// ParseDialect returns the dialect named s ("modern" or "legacy").
func ParseDialect(s string) (Dialect, error) {
	switch Dialect(s) {
	case Modern, Legacy:
		return Dialect(s), nil
	}
	return "", fmt.Errorf("unknown ClickHouse dialect %q (want modern or legacy)", s)
}

// DialectOf returns the dialect of a server whose `SELECT version()` answered
// version, such as "18.16.1" or "24.8.4.13".
func DialectOf(version string) (Dialect, error) {
	parts := strings.SplitN(strings.TrimSpace(version), ".", 3)
	if len(parts) < 2 {
		return "", fmt.Errorf("unrecognized ClickHouse version %q", version)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return "", fmt.Errorf("unrecognized ClickHouse version %q", version)
	}
	if major > ModernSince[0] || major == ModernSince[0] && minor >= ModernSince[1] {
		return Modern, nil
	}
	return Legacy, nil
}
