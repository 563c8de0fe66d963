package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/checkpoint/chstore"
	"github.com/tributary-cdc/tributary/checkpoint/filestore"
	"github.com/tributary-cdc/tributary/mapping"
	"github.com/tributary-cdc/tributary/pipeline"
	chsink "github.com/tributary-cdc/tributary/sink/clickhouse"
	"github.com/tributary-cdc/tributary/source"
	"github.com/tributary-cdc/tributary/source/eventapi"
)

// storeOptions are the flags that find pipelines' checkpoints, shared by
// the checkpoint and status commands; they spell them as run does.
type storeOptions struct {
	pipeline     string // --pipeline
	pipelineName string // --pipeline.name, the run command's spelling
	file         string
	clickhouse   chsink.Config
	all          bool // no pipeline named means every pipeline (status)
}

// register adds the flags to fs; what describes --pipeline. With all, the
// default pipeline is none (every pipeline), else run's default.
func (o *storeOptions) register(fs *pflag.FlagSet, what string, all bool) {
	o.all = all
	name := pipeline.DefaultConfig().Name
	if all {
		name = ""
	}
	o.clickhouse = chsink.DefaultConfig()
	fs.StringVar(&o.pipeline, "pipeline", name, what+" (run's --pipeline.name)")
	fs.StringVar(&o.pipelineName, "pipeline.name", name, "the same as --pipeline, spelled as the run command spells it")
	fs.StringVar(&o.file, "checkpoint.file", "", "read checkpoints from this JSON file (run's --checkpoint.file) instead of the ClickHouse table")
	o.clickhouse.RegisterFlags(fs)
}

// name returns the pipeline the flags (or their environment twins) name, and
// whether any did: a flag on the command line wins over the environment,
// which wins over the default; either spelling counts. cliPipeline and
// cliPipelineName say which spellings the command line set (before the
// environment was applied).
func (o *storeOptions) name(fs *pflag.FlagSet, cliPipeline, cliPipelineName bool) (string, bool, []error) {
	var problems []error
	name := o.pipeline
	switch {
	case cliPipeline:
	case cliPipelineName, fs.Changed("pipeline.name"):
		name = o.pipelineName
	}
	if cliPipeline && cliPipelineName && o.pipelineName != o.pipeline {
		problems = append(problems, fmt.Errorf("--pipeline %q and --pipeline.name %q disagree", o.pipeline, o.pipelineName))
	}
	named := fs.Changed("pipeline") || fs.Changed("pipeline.name")
	if strings.TrimSpace(name) == "" && (named || !o.all) {
		problems = append(problems, errors.New("--pipeline must not be empty"))
	}
	if o.file == "" {
		if err := o.clickhouse.Validate(); err != nil {
			problems = append(problems, err)
		}
	}
	return name, named, problems
}

// inspector reads what exists: the checkpoint store and, in ClickHouse,
// the events and rejects of each pipeline.
type inspector struct {
	store checkpoint.Store
	where string // the store, for messages
	list  func(ctx context.Context) ([]string, error)
	db    string // the ClickHouse database of the tables
	// all is what follows a table's name to read it whole: "" on a single
	// server or a cluster of one shard, chsink.DistributedSuffix on several
	// shards (the Distributed tables).
	all   string
	conn  driver.Conn // nil when ClickHouse could not be reached
	chErr error       // why conn is nil
	now   func() time.Time
}

// openInspector opens the store the options name. An unknown database, a
// database without the checkpoint table, or a missing checkpoint file is
// an error that lists what exists. With a file store it connects to
// ClickHouse too, for the events, and notes a failure instead of failing.
func openInspector(ctx context.Context, o storeOptions) (*inspector, error) {
	in := &inspector{db: o.clickhouse.Database, now: time.Now}
	// A connection to the system database: a missing database must be
	// reported as such, not as a failed handshake.
	sys := o.clickhouse
	sys.Database = "system"
	if o.file != "" {
		fs := filestore.New(o.file)
		if _, err := fs.Pipelines(ctx); err != nil {
			return nil, err
		}
		in.store, in.where, in.list = fs, "file "+o.file, fs.Pipelines
		cctx, cancel := context.WithTimeout(ctx, min(o.clickhouse.DialTimeout, 5*time.Second))
		defer cancel()
		if in.conn, in.chErr = chsink.Open(cctx, sys); in.chErr != nil {
			in.chErr = fmt.Errorf("ClickHouse %s not read: %w", strings.Join(o.clickhouse.Addr, ","), in.chErr)
		} else if in.all, in.chErr = readWhole(cctx, in.conn, o.clickhouse.Cluster); in.chErr != nil {
			in.conn.Close()
			in.conn = nil
		}
		return in, nil
	}
	conn, err := chsink.Open(ctx, sys)
	if err != nil {
		return nil, err
	}
	in.conn = conn
	if in.all, err = readWhole(ctx, conn, o.clickhouse.Cluster); err != nil {
		return nil, err
	}
	in.where = fmt.Sprintf("ClickHouse %s, table %s.%s", strings.Join(o.clickhouse.Addr, ","), in.db, chstore.Table)
	having, err := in.strings(ctx, "SELECT DISTINCT database FROM system.tables WHERE name = ? ORDER BY database", chstore.Table)
	if err != nil {
		return nil, err
	}
	dbs, err := in.strings(ctx, "SELECT name FROM system.databases WHERE name = ?", in.db)
	if err != nil {
		return nil, err
	}
	if len(dbs) == 0 {
		return nil, fmt.Errorf("ClickHouse %s has no database %q (--clickhouse.database); databases with a checkpoint table: %s",
			strings.Join(o.clickhouse.Addr, ","), in.db, listOrNone(having))
	}
	if !contains(having, in.db) {
		return nil, fmt.Errorf("database %q on ClickHouse %s has no checkpoint table %s: no pipeline has run there; databases with one: %s",
			in.db, strings.Join(o.clickhouse.Addr, ","), chstore.Table, listOrNone(having))
	}
	in.store = chstore.New(conn, in.db).WithCluster(o.clickhouse.ClusterSpec())
	in.list = func(ctx context.Context) ([]string, error) {
		return in.strings(ctx, "SELECT DISTINCT pipeline FROM "+in.db+"."+chstore.Table+" ORDER BY pipeline")
	}
	return in, nil
}

// readWhole returns the suffix of the tables that hold every row of the
// cluster (inspector.all): the Distributed tables when cluster has several
// shards, the tables themselves otherwise.
func readWhole(ctx context.Context, conn driver.Conn, cluster string) (string, error) {
	if cluster == "" {
		return "", nil
	}
	var shards uint64
	if err := conn.QueryRow(ctx, "SELECT uniqExact(shard_num) FROM system.clusters WHERE cluster = ?", cluster).Scan(&shards); err != nil {
		return "", fmt.Errorf("read cluster %s from system.clusters: %w", cluster, err)
	}
	if shards == 0 {
		return "", fmt.Errorf("--clickhouse.cluster: the server does not know a cluster %q (system.clusters)", cluster)
	}
	if shards > 1 {
		return chsink.DistributedSuffix, nil
	}
	return "", nil
}

func (in *inspector) Close() {
	if in.conn != nil {
		in.conn.Close()
	}
	if in.store != nil {
		in.store.Close()
	}
}

// strings runs a query whose rows are one string each.
func (in *inspector) strings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := in.conn.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// load returns the checkpoint of pipeline name. A pipeline the store has
// never heard of (no checkpoint and no reset) is an error listing those it
// has.
func (in *inspector) load(ctx context.Context, name string) (checkpoint.Checkpoint, bool, error) {
	cp, found, err := in.store.Load(ctx, name)
	if err != nil || found || cp.Generation > 0 {
		return cp, found, err
	}
	names, lerr := in.list(ctx)
	if lerr != nil {
		return cp, false, fmt.Errorf("pipeline %q has no checkpoint in %s (listing the pipelines failed: %w)", name, in.where, lerr)
	}
	return cp, false, fmt.Errorf("pipeline %q has no checkpoint in %s; pipelines there: %s", name, in.where, listOrNone(names))
}

// pipelineFacts is what ClickHouse holds of one pipeline.
type pipelineFacts struct {
	newest  time.Time // the newest event written
	flavor  string
	tenant  string
	rejects map[string]uint64 // by kind
	err     error             // why they could not be read
}

func (in *inspector) facts(ctx context.Context, name string) pipelineFacts {
	var f pipelineFacts
	if in.conn == nil {
		f.err = in.chErr
		return f
	}
	tables, err := in.strings(ctx, "SELECT name FROM system.tables WHERE database = ? AND name IN (?, ?)", in.db, "events", mapping.TableRejects)
	if err != nil {
		f.err = err
		return f
	}
	if contains(tables, "events") {
		var n uint64
		ms, err := in.millis(ctx)
		if err != nil {
			f.err = err
			return f
		}
		var newest int64
		row := in.conn.QueryRow(ctx, "SELECT count(), toInt64(max("+ms+")), any(flavor), any(tenant) FROM "+in.db+".events"+in.all+" WHERE _source = ?", name)
		if err := row.Scan(&n, &newest, &f.flavor, &f.tenant); err != nil {
			f.err = fmt.Errorf("read %s.events: %w", in.db, err)
			return f
		}
		if n > 0 {
			f.newest = time.UnixMilli(newest).UTC()
		}
	}
	f.rejects = map[string]uint64{}
	if contains(tables, mapping.TableRejects) {
		rows, err := in.conn.Query(ctx, "SELECT kind, count() FROM "+in.db+"."+mapping.TableRejects+in.all+" FINAL WHERE _source = ? GROUP BY kind", name)
		if err != nil {
			f.err = fmt.Errorf("read %s.%s: %w", in.db, mapping.TableRejects, err)
			return f
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			var n uint64
			if err := rows.Scan(&k, &n); err != nil {
				f.err = err
				return f
			}
			f.rejects[k] = n
		}
		if err := rows.Err(); err != nil {
			f.err = err
		}
	}
	return f
}

// millis returns the expression of an event's time in milliseconds since
// the epoch in db.events: legacy tables keep whole seconds in timestamp and
// the milliseconds in timestamp_ms.
func (in *inspector) millis(ctx context.Context) (string, error) {
	cols, err := in.strings(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = 'events' AND name = 'timestamp_ms'", in.db)
	if err != nil {
		return "", err
	}
	if len(cols) > 0 {
		return "toUInt64(toUInt32(timestamp)) * 1000 + timestamp_ms", nil
	}
	return "toUnixTimestamp64Milli(timestamp)", nil
}

// lsnRE matches a PostgreSQL LSN, the position of the postgres source.
var lsnRE = regexp.MustCompile(`^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$`)

// describePosition says what a saved position is: an LSN, or a paging
// token (with how many events of its page were delivered).
func describePosition(p source.Position) string {
	s := string(p)
	switch {
	case s == "":
		return "none (the configured start)"
	case lsnRE.MatchString(s):
		return "LSN " + s
	case strings.HasPrefix(s, "windows="):
		return fmt.Sprintf("backfill windows (%d characters; see below)", len(s))
	}
	note := ""
	if rest, ok := strings.CutPrefix(s, "skip="); ok {
		if n, tok, ok := strings.Cut(rest, ";"); ok {
			s, note = tok, " ("+n+" events into its page)"
		}
	}
	if len(s) > 60 {
		return fmt.Sprintf("paging token %s… (%d characters)%s", s[:48], len(s), note)
	}
	return "paging token " + s + note
}

// backfillWindows describes the backfill windows a checkpoint of the API
// source holds (eventapi.DescribeWindows): a line with the windows done and
// the low watermark, then one line per unfinished window saying how far it
// is. None when the position is one token or LSN.
func backfillWindows(cp checkpoint.Checkpoint) []string {
	return eventapi.DescribeWindows(cp.Position)
}

// screen writes what is known of pipeline name, one labelled line each.
func (in *inspector) screen(ctx context.Context, w io.Writer, name string, cp checkpoint.Checkpoint, found bool, proc *processFacts) {
	now := in.now()
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-17s %s\n", label+":", fmt.Sprintf(format, args...))
	}
	f := in.facts(ctx, name)
	line("pipeline", "%s", name)
	line("store", "%s (generation %d)", in.where, cp.Generation)
	switch {
	case f.err != nil:
		line("source", "unknown: %v", f.err)
	case f.flavor == "":
		line("source", "unknown: no event written to %s.events yet", in.db)
	case f.flavor == source.FlavorPostgres:
		line("source", "PostgreSQL table, logical replication (tenant %s)", f.tenant)
	default:
		line("source", "event-stream API, %s flavor, tenant %s", f.flavor, f.tenant)
	}
	if !found {
		line("position", "none: the next start begins from the configured start%s", generationNote(cp))
	} else {
		at := "event time unknown"
		if !f.newest.IsZero() {
			at = f.newest.UTC().Format(time.RFC3339Nano) + " (the newest event written)"
		}
		line("position", "%s, %s", at, describePosition(cp.Position))
		line("events written", "%d", cp.Events)
		line("last checkpoint", "%s (%s ago)", cp.SavedAt.UTC().Format(time.RFC3339Nano), roundAge(now.Sub(cp.SavedAt)))
	}
	if !f.newest.IsZero() {
		line("lag", "%s (now − the newest event written)", roundAge(now.Sub(f.newest)))
	}
	if f.err == nil {
		var total uint64
		kinds := make([]string, 0, len(f.rejects))
		for k, n := range f.rejects {
			total += n
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(kinds)
		if total == 0 {
			line("rejects", "0")
		} else {
			line("rejects", "%d (%s): SELECT * FROM %s.%s FINAL WHERE _source = '%s'", total, strings.Join(kinds, ", "), in.db, mapping.TableRejects+in.all, name)
		}
	}
	if ws := backfillWindows(cp); len(ws) > 0 {
		line("backfill windows", "%s", ws[0])
		for _, s := range ws[1:] {
			fmt.Fprintf(w, "  %s\n", s)
		}
	} else {
		line("backfill windows", "none (the checkpoint holds one position)")
	}
	if proc != nil {
		proc.write(w, line)
	}
}

// roundAge rounds a duration for a person: seconds under an hour, minutes
// under two days, hours beyond.
func roundAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	default:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), (d%(24*time.Hour))/time.Hour)
	}
}

// processFacts is what a running process says of itself: /readyz and
// some of /metrics.
type processFacts struct {
	url     string
	ready   string // "ready", or "not ready:" and the lines of /readyz
	metrics map[string]float64
	err     error
}

// readProcess asks the process at base (its --web.listen-address) for
// /readyz and /metrics.
func readProcess(ctx context.Context, base string, timeout time.Duration) *processFacts {
	p := &processFacts{url: strings.TrimRight(base, "/")}
	client := &http.Client{Timeout: timeout}
	get := func(path string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path, nil)
		if err != nil {
			return 0, "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		return resp.StatusCode, string(b), err
	}
	code, body, err := get("/readyz")
	if err != nil {
		p.err = err
		return p
	}
	switch code {
	case http.StatusOK:
		p.ready = "ready"
	default:
		p.ready = fmt.Sprintf("not ready (HTTP %d):\n%s", code, strings.TrimSpace(body))
	}
	code, body, err = get("/metrics")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("/metrics: HTTP %d", code)
	}
	if err != nil {
		p.err = err
		return p
	}
	p.metrics = sumMetrics(body)
	return p
}

// sumMetrics reads Prometheus' text format and returns each metric's value
// summed over its labels.
func sumMetrics(text string) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		name, rest := l, ""
		if i := strings.IndexAny(l, "{ "); i >= 0 {
			name, rest = l[:i], l[i:]
		}
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			m[name] += v
		}
	}
	return m
}

func (p *processFacts) write(w io.Writer, line func(label, format string, args ...any)) {
	if p.err != nil {
		line("process", "%s did not answer: %v", p.url, p.err)
		return
	}
	ready, rest, _ := strings.Cut(p.ready, "\n")
	line("process", "%s: %s", p.url, ready)
	for _, l := range strings.Split(rest, "\n") {
		if l != "" {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	m := p.metrics
	seconds := func(name string) string {
		v, ok := m[name]
		if !ok {
			return "unknown"
		}
		return roundAge(time.Duration(v * float64(time.Second)))
	}
	line("process events", "%.0f read, %.0f written, %.0f rejected since it started",
		m["tributary_source_events_read_total"], m["tributary_sink_events_written_total"], m["tributary_events_rejected_total"])
	line("process lag", "%s when it last wrote; last checkpoint %s ago", seconds("tributary_pipeline_lag_seconds"), seconds("tributary_checkpoint_age_seconds"))
	if m["tributary_pgrepl_confirmed_flush_lsn"] > 0 {
		line("slot lag", "%.0f bytes of WAL kept for the replication slot", m["tributary_pgrepl_slot_lag_bytes"])
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func listOrNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
