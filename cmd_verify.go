package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/source/eventapi"
	"github.com/tributary-cdc/tributary/source/pgrepl"
)

func init() {
	register(command{
		name:    "verify",
		summary: "compare the source's events in a time range with ClickHouse (counts per day and type, locator checksums)",
		run:     runVerify,
		flagSet: func() *pflag.FlagSet { fs, _ := verifyFlags(); return fs },
	})
}

type verifyOptions struct {
	storeOptions
	source   string
	from, to time.Time
	api      eventapi.Config
	pg       pgrepl.Config
}

func verifyFlags() (*pflag.FlagSet, *verifyOptions) {
	o := &verifyOptions{source: "api", pg: pgrepl.DefaultConfig()}
	fs := pflag.NewFlagSet("verify", pflag.ContinueOnError)
	fs.StringVar(&o.source, "source", o.source, "where the events come from: api or postgres (as run's --source)")
	fs.Var(timeFlag{&o.from}, "from", "start of the range compared (inclusive): RFC 3339, a date, or milliseconds since the epoch (required)")
	fs.Var(timeFlag{&o.to}, "to", "end of the range compared (exclusive), not in the future (required)")
	o.storeOptions.register(fs, "the pipeline whose rows to compare: the _source column of the events table", false)
	_ = fs.MarkHidden("checkpoint.file")
	o.api.RegisterFlags(fs)
	for _, name := range []string{"api.start", "api.end", "api.poll-interval", "api.prefetch", "enrich.policy-locators", "enrich.concurrency", "enrich.cache-size"} {
		_ = fs.MarkHidden(name) // --from and --to are the range; nothing is enriched
	}
	o.pg.RegisterFlags(fs)
	return fs, o
}

// timeFlag is a pflag.Value of a timestamp, parsed like --api.start.
type timeFlag struct{ t *time.Time }

func (v timeFlag) String() string {
	if v.t == nil || v.t.IsZero() {
		return ""
	}
	return v.t.UTC().Format(time.RFC3339Nano)
}

func (v timeFlag) Set(s string) error {
	t, err := eventapi.ParseTime(s)
	if err == nil {
		*v.t = t
	}
	return err
}

func (v timeFlag) Type() string { return "time" }

const verifyUsage = `Usage: tributary verify --from T1 --to T2 [--source api|postgres] [--api.* | --pg.* flags] [--clickhouse.* flags] [--pipeline NAME]

Reads the source's events with a time in [T1, T2) again (the API from
startTimestamp T1 to endTimestamp T2, paged like run; or the PostgreSQL table
with plain SQL on its time column), and compares them with the events table
in ClickHouse under FINAL (the rows whose _source is the pipeline): per UTC
day, the count of each event type and a checksum of the locators (the sum of
their 64-bit FNV-1a hashes, so order does not matter). It prints every
difference: a day missing on one side, a type whose count differs, a day
whose counts agree but whose locators do not. Events the source delivers
that cannot be read are counted and left out (they are in _tributary_rejects).

It takes the run command's flags and environment twins (--api.start and
--api.end are replaced by --from and --to). A transient API failure is tried
again up to 4 times. Exit codes: 0 the two sides agree; 1 a difference, or a
side could not be read; 2 invalid usage.`

func runVerify(args []string, stdout, stderr io.Writer) int {
	fs, o := verifyFlags()
	if code, done := parseFlags("verify", verifyUsage, fs, args, stdout, stderr); done {
		return code
	}
	var problems []error
	now := time.Now()
	switch {
	case o.from.IsZero() || o.to.IsZero():
		problems = append(problems, errors.New("--from and --to are required"))
	case !o.from.Before(o.to):
		problems = append(problems, fmt.Errorf("--from %s must be before --to %s", o.from.Format(time.RFC3339), o.to.Format(time.RFC3339)))
	case o.to.After(now):
		problems = append(problems, fmt.Errorf("--to %s is in the future: verify compares a range that is over", o.to.Format(time.RFC3339)))
	}
	o.file = ""
	name, _, more := o.storeOptions.name(fs, false, false)
	problems = append(problems, more...)
	switch o.source {
	case "api":
		o.api.Start, o.api.End = o.from, o.to
		if err := o.api.Validate(); err != nil {
			problems = append(problems, err)
		}
	case "postgres":
		if err := o.pg.Validate(); err != nil {
			problems = append(problems, err)
		}
	default:
		problems = append(problems, fmt.Errorf("--source must be api or postgres, got %q", o.source))
	}
	if len(problems) > 0 {
		return invalidConfig("verify", errors.Join(problems...), stderr)
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "tributary verify: %v\n", err)
		return 1
	}
	ctx := context.Background()
	in, err := openInspector(ctx, o.storeOptions)
	if err != nil {
		return fail(err)
	}
	defer in.Close()
	read := func(from, to time.Time, src, ch *tally) error {
		var err error
		if o.source == "api" {
			cfg := o.api
			cfg.Start, cfg.End = from, to
			err = readAPIRange(ctx, cfg, src, stderr)
		} else {
			err = readPGRange(ctx, o.pg, from, to, src)
		}
		if err != nil {
			return fmt.Errorf("read the source: %w", err)
		}
		if err := readClickHouseRange(ctx, in, name, from, to, o.api.Types, ch); err != nil {
			return fmt.Errorf("read ClickHouse: %w", err)
		}
		return nil
	}
	src, ch := newTally(nil), newTally(nil)
	if err := read(o.from, o.to, src, ch); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stdout, "verify [%s, %s) of pipeline %s: the source has %d events, ClickHouse (%s.events%s FINAL) %d\n",
		o.from.UTC().Format(time.RFC3339Nano), o.to.UTC().Format(time.RFC3339Nano), name, src.total, in.db, in.all, ch.total)
	if src.rejects > 0 {
		fmt.Fprintf(stdout, "%d events of the source cannot be read and are left out (they are in %s._tributary_rejects)\n", src.rejects, in.db)
	}
	diffs, days := compareTallies(src, ch)
	for _, d := range diffs {
		fmt.Fprintln(stdout, d)
	}
	if len(diffs) == 0 {
		fmt.Fprintf(stdout, "no difference: %d days, %d events\n", len(src.days), src.total)
		return 0
	}
	fmt.Fprintf(stdout, "%d differences\n", len(diffs))
	// The locators behind them: the days that differ are read again, from
	// the first to the last of them, keeping their locators.
	days = days[:min(len(days), maxListedDays)]
	first, _ := time.Parse("2006-01-02", days[0])
	last, _ := time.Parse("2006-01-02", days[len(days)-1])
	from, to := maxTime(o.from, first), minTime(o.to, last.Add(24*time.Hour))
	src, ch = newTally(days), newTally(days)
	if err := read(from, to, src, ch); err != nil {
		return fail(fmt.Errorf("listing the locators that differ: %w", err))
	}
	for _, day := range days {
		listLocators(stdout, day, "missing in ClickHouse", src.keep[day], ch.keep[day])
		listLocators(stdout, day, "only in ClickHouse", ch.keep[day], src.keep[day])
	}
	return 1
}

// maxListedDays and maxListedLocators bound the locators listed after the
// differences: the first days that differ, the first locators of each.
const (
	maxListedDays     = 20
	maxListedLocators = 20
)

// listLocators prints the locators of one day that are in a and not in b.
func listLocators(w io.Writer, day, what string, a, b map[string]string) {
	var locs []string
	for l := range a {
		if _, ok := b[l]; !ok {
			locs = append(locs, l)
		}
	}
	if len(locs) == 0 {
		return
	}
	sort.Strings(locs)
	fmt.Fprintf(w, "%s %s: %d events:", day, what, len(locs))
	for _, l := range locs[:min(len(locs), maxListedLocators)] {
		fmt.Fprintf(w, " %s (%s)", l, a[l])
	}
	if len(locs) > maxListedLocators {
		fmt.Fprintf(w, " and %d more", len(locs)-maxListedLocators)
	}
	fmt.Fprintln(w)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// tally is one side's events: per UTC day, the count of each type and the
// sum of the locators' hashes.
type tally struct {
	days    map[string]*dayTally
	total   int
	rejects int
	keep    map[string]map[string]string // for the days listed: locator → type
}

type dayTally struct {
	types map[string]int
	n     int
	sum   uint64
}

// newTally returns an empty tally that keeps the locators of the days
// listed (none when nil).
func newTally(keepDays []string) *tally {
	t := &tally{days: map[string]*dayTally{}, keep: map[string]map[string]string{}}
	for _, d := range keepDays {
		t.keep[d] = map[string]string{}
	}
	return t
}

func (t *tally) add(locator, typ string, at time.Time) {
	day := at.UTC().Format("2006-01-02")
	d := t.days[day]
	if d == nil {
		d = &dayTally{types: map[string]int{}}
		t.days[day] = d
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(locator))
	if k := t.keep[day]; k != nil {
		k[locator] = typ
	}
	d.types[typ]++
	d.n++
	d.sum += h.Sum64()
	t.total++
}

// compareTallies returns every difference of ClickHouse (ch) from the
// source (src), day by day, and the days that differ.
func compareTallies(src, ch *tally) (out, differ []string) {
	days := map[string]bool{}
	for d := range src.days {
		days[d] = true
	}
	for d := range ch.days {
		days[d] = true
	}
	sorted := make([]string, 0, len(days))
	for d := range days {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	for _, day := range sorted {
		n := len(out)
		s, c := src.days[day], ch.days[day]
		switch {
		case c == nil:
			out = append(out, fmt.Sprintf("%s: missing in ClickHouse: the source has %d events that day (%s), ClickHouse none", day, s.n, typeList(s.types)))
			differ = append(differ, day)
			continue
		case s == nil:
			out = append(out, fmt.Sprintf("%s: only in ClickHouse: %d events (%s), the source has none that day", day, c.n, typeList(c.types)))
			differ = append(differ, day)
			continue
		}
		types := map[string]bool{}
		for k := range s.types {
			types[k] = true
		}
		for k := range c.types {
			types[k] = true
		}
		names := make([]string, 0, len(types))
		for k := range types {
			names = append(names, k)
		}
		sort.Strings(names)
		counts := false
		for _, k := range names {
			if a, b := s.types[k], c.types[k]; a != b {
				counts = true
				what := fmt.Sprintf("%d missing in ClickHouse", a-b)
				if b > a {
					what = fmt.Sprintf("%d more in ClickHouse", b-a)
				}
				out = append(out, fmt.Sprintf("%s %s: the source has %d, ClickHouse %d (%s)", day, k, a, b, what))
			}
		}
		if !counts && s.sum != c.sum {
			out = append(out, fmt.Sprintf("%s: the same counts (%d events), other locators (checksum %016x in the source, %016x in ClickHouse)", day, s.n, s.sum, c.sum))
		}
		if len(out) > n {
			differ = append(differ, day)
		}
	}
	return out, differ
}

func typeList(types map[string]int) string {
	names := make([]string, 0, len(types))
	for k := range types {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %d", k, types[k]))
	}
	if len(parts) > 6 {
		parts = append(parts[:6], fmt.Sprintf("and %d more types", len(parts)-6))
	}
	return strings.Join(parts, ", ")
}

// readAPIRange reads the API's events in [cfg.Start, cfg.End) with the run
// command's client. The client makes one attempt per call; a transient
// failure is tried again here (retryCLI), from where it failed.
func readAPIRange(ctx context.Context, cfg eventapi.Config, t *tally, stderr io.Writer) error {
	cfg.Prefetch = 2
	c, err := eventapi.New(cfg)
	if err != nil {
		return err
	}
	if err := c.Open(ctx, ""); err != nil {
		return err
	}
	defer c.Close(context.Background())
	for done := false; !done; {
		var evs []eventOf
		err := retryCLI(ctx, stderr, func(ctx context.Context) error {
			batch, err := c.Read(ctx, 10000)
			if errors.Is(err, eventapi.ErrEndReached) {
				done = true // --to is past and the stream caught up with it
				return nil
			}
			if err != nil {
				return err
			}
			for _, e := range batch.Events {
				evs = append(evs, eventOf{e.Locator, e.Type, e.Timestamp, e.Reject != ""})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range evs {
			switch {
			case e.reject:
				t.rejects++
			case !e.at.Before(cfg.Start) && e.at.Before(cfg.End):
				t.add(e.locator, e.typ, e.at)
			}
		}
	}
	return nil
}

type eventOf struct {
	locator, typ string
	at           time.Time
	reject       bool
}

// readPGRange reads the table's events in [from, to) with plain SQL.
func readPGRange(ctx context.Context, cfg pgrepl.Config, from, to time.Time, t *tally) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET TIME ZONE 'UTC'"); err != nil {
		return err
	}
	table := pgx.Identifier(strings.Split(cfg.Table, ".")).Sanitize()
	col := func(s string) string { return pgx.Identifier{s}.Sanitize() }
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT %s::text, %s::text, %s FROM %s WHERE %s >= $1 AND %s < $2",
		col(cfg.Columns.Locator), col(cfg.Columns.Type), col(cfg.Columns.OccurredAt), table, col(cfg.Columns.OccurredAt), col(cfg.Columns.OccurredAt)),
		from.UTC(), to.UTC())
	if err != nil {
		return fmt.Errorf("read table %s: %w", cfg.Table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var loc, typ *string
		var at time.Time
		if err := rows.Scan(&loc, &typ, &at); err != nil {
			return fmt.Errorf("read table %s: %w", cfg.Table, err)
		}
		if loc == nil || typ == nil || *loc == "" || *typ == "" {
			t.rejects++ // the pipeline quarantines such a row
			continue
		}
		t.add(*loc, *typ, at)
	}
	return rows.Err()
}

// readClickHouseRange reads the pipeline's events in [from, to) from the
// events table under FINAL, with millisecond precision on both dialects
// (legacy tables keep whole seconds in timestamp and the milliseconds in
// timestamp_ms).
func readClickHouseRange(ctx context.Context, in *inspector, pipeline string, from, to time.Time, types []string, t *tally) error {
	if in.conn == nil {
		return in.chErr
	}
	tables, err := in.strings(ctx, "SELECT name FROM system.tables WHERE database = ? AND name = 'events'", in.db)
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		return fmt.Errorf("database %s has no events table", in.db)
	}
	ms, err := in.millis(ctx)
	if err != nil {
		return err
	}
	q := "SELECT locator, type, toInt64(" + ms + ") FROM " + in.db + ".events" + in.all + " FINAL WHERE _source = ? AND timestamp >= toDateTime(?, 'UTC') AND timestamp < toDateTime(?, 'UTC')"
	args := []any{pipeline, from.Unix(), to.Unix() + 1}
	if len(types) > 0 {
		q += " AND type IN (?)"
		args = append(args, types)
	}
	rows, err := in.conn.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var loc, typ string
		var msec int64
		if err := rows.Scan(&loc, &typ, &msec); err != nil {
			return err
		}
		at := time.UnixMilli(msec).UTC()
		if !at.Before(from) && at.Before(to) {
			t.add(loc, typ, at)
		}
	}
	return rows.Err()
}
