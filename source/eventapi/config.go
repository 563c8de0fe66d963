// Package eventapi reads the Socotra event stream, a paged HTTP API, in both of
// its flavors: "suite" (Insurance Suite, GET /event/{tenant}/events/list) and
// "classic" (Socotra Core, GET /eventstream/events or /attributedEvents).
//
// A Client is a source.Source whose Position is the API's paging token. It
// fetches pages ahead of the pipeline and makes one attempt per request: a
// failure reaches the pipeline through Read, classified with internal/fault
// (transient, with the server's Retry-After, or permanent, such as a refused
// paging token), and the pipeline retries; the Read after a failure fetches
// again from the request that failed, so the token never advances past an
// undelivered page. An event that cannot be read is delivered with
// source.Event.Reject set instead of failing its page. An Enricher completes
// the partial policy-locator lists of billing events through the suite's
// billing look-ups.
package eventapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/source"
)

// Defaults of the Config fields left at their zero value.
const (
	DefaultPageSize          = 1000
	MaxPageSize              = 1000
	DefaultPollInterval      = time.Second
	DefaultRequestTimeout    = 30 * time.Second
	DefaultPrefetch          = 2
	DefaultUserAgent         = "tributary-eventapi"
	DefaultEnrichConcurrency = 8
	DefaultEnrichCacheSize   = 10000
	// DefaultEnrichGiveUp is how long a failing look-up may hold its event back.
	DefaultEnrichGiveUp = 2 * time.Minute
	// DefaultBackfillConcurrency is how many time windows a backfill reads at once.
	DefaultBackfillConcurrency = 8
	// DefaultBackfillMargin keeps backfill windows this far from the present.
	DefaultBackfillMargin = 5 * time.Minute
	// maxConcurrency bounds --api.max-concurrency and --api.backfill-concurrency.
	maxConcurrency = 64
	// maxBodyBytes bounds one response body, so memory stays bounded even if
	// a server misbehaves.
	maxBodyBytes = 256 << 20
	// maxPrefetch bounds --api.prefetch: pages held in memory ahead of the pipeline.
	maxPrefetch = 64
)

// uuidRE matches a UUID, the form of a suite tenant locator.
var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Config configures a Client and an Enricher. Build it with RegisterFlags (and
// cli.ApplyEnv) or directly; zero fields take their defaults; call Validate
// before New.
type Config struct {
	// Flavor is source.FlavorSuite or source.FlavorClassic.
	Flavor string
	// URL is the API's base URL, such as https://api.sandbox.socotra.com
	// (suite) or https://mytenant-configeditor.co.sandbox.socotra.com (classic).
	URL string
	// Tenant is the suite tenant locator (a UUID, required for suite). For
	// classic it only labels events; it defaults to the URL's host name.
	Tenant string
	// Token is the bearer token; TokenFile, if set instead, is read when it
	// changes, so a rotated token is picked up without a restart.
	Token, TokenFile string
	// Attributed selects the classic /eventstream/attributedEvents endpoint,
	// whose events carry the username that caused them.
	Attributed bool
	// Start is the first timestamp of the stream (inclusive); End, if set, the
	// last. They are sent only on the first call (a token must travel alone).
	Start, End time.Time
	// Types restricts the event types. One type is filtered by the server;
	// several are filtered client-side (the API takes one type per call), which
	// requires Start.
	Types []string
	// PageSize is the number of events per page, 1..MaxPageSize.
	PageSize int
	// PollInterval is the wait between calls once the stream is caught up.
	PollInterval time.Duration
	// RequestTimeout bounds every HTTP request, body included.
	RequestTimeout time.Duration
	// Prefetch is how many pages are fetched ahead of the pipeline.
	Prefetch int
	// UserAgent is sent with every request.
	UserAgent string
	// EnrichPolicyLocators asks the pipeline to complete partial policy-locator
	// lists with an Enricher (suite only).
	EnrichPolicyLocators bool
	// EnrichConcurrency bounds the Enricher's concurrent look-ups.
	EnrichConcurrency int
	// EnrichCacheSize bounds the Enricher's LRU cache of look-ups.
	EnrichCacheSize int
	// EnrichGiveUp is how long the look-up of an event's entity may keep
	// failing (transiently) before the event is written with its list
	// marked incomplete instead of holding the stream back.
	EnrichGiveUp time.Duration
	// MaxConcurrency is the most requests under way at once, of every kind
	// (pages of every window, look-ups): the ceiling of the AIMD limit.
	MaxConcurrency int
	// BackfillConcurrency is how many time windows are read at once when the
	// start is far behind now; 1 reads the stream sequentially. Unlike the
	// other fields, zero means 1 (the flag's default is
	// DefaultBackfillConcurrency).
	BackfillConcurrency int
	// BackfillMargin keeps backfill windows away from the present: the
	// windows cover [Start, now − margin], the open tail the rest. Negative:
	// no margin (tests).
	BackfillMargin time.Duration

	// Logger receives lifecycle messages (Info); nil discards.
	Logger *slog.Logger
	// OnRequest, if set, is called after every HTTP attempt with its status
	// (0 when no response arrived) and its duration. It must be cheap and
	// safe for concurrent use.
	OnRequest func(status int, d time.Duration)
	// OnLookup, if set, is called for every look-up the Enricher makes, with
	// its result: "hit" (from the cache), "miss" (fetched), "not_found" or
	// "error". It must be cheap and safe for concurrent use.
	OnLookup func(result string)
	// OnPage, if set, is called for every page fetched, with its event count.
	OnPage func(events int)

	// The deprecated flags --api.max-backoff and --api.max-malformed land
	// here and are ignored: the pipeline retries, up to --pipeline.retry-max.
	deprecatedMaxBackoff   time.Duration
	deprecatedMaxMalformed int
	// fromFlags is set by RegisterFlags: a value given on the command line
	// is validated as given (--api.page-size 0 is an error), while a zero
	// field of a Config built in code takes its default.
	fromFlags bool
}

// deprecatedRetry is the deprecation message of the client's former retry flags.
const deprecatedRetry = "it has no effect: the client makes one attempt per request and the pipeline retries, with backoff up to --pipeline.retry-max"

// RegisterFlags adds the --api.* and --enrich.* flags to fs, bound to c, with
// their defaults.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	c.fromFlags = true
	fs.StringVar(&c.Flavor, "api.flavor", source.FlavorSuite, `event-stream flavor: "suite" (Insurance Suite) or "classic" (Socotra Core)`)
	fs.StringVar(&c.URL, "api.url", "", "base URL of the API, e.g. https://api.sandbox.socotra.com")
	fs.StringVar(&c.Tenant, "api.tenant", "", "tenant locator (UUID; required for suite; classic: a label, default the URL's host)")
	fs.StringVar(&c.Token, "api.token", "", "bearer token (prefer --api.token-file or TRIBUTARY_API_TOKEN; never logged)")
	fs.StringVar(&c.TokenFile, "api.token-file", "", "file holding the bearer token, re-read when it changes and after a 401/403 (which are then retried)")
	fs.BoolVar(&c.Attributed, "api.attributed", false, "classic: read /eventstream/attributedEvents (events carry the username)")
	fs.Var(timeValue{&c.Start}, "api.start", "first event timestamp on the first run: RFC 3339, a date, or milliseconds since the epoch")
	fs.Var(timeValue{&c.End}, "api.end", "end of the events read (optional; like --api.start, or now): sent as endTimestamp on the first call, so the server returns events before it (the emulator: strictly before); the run ends with exit 0 once the stream is caught up and the wall clock is past it")
	fs.StringSliceVar(&c.Types, "api.types", nil, "event types to read (comma list); several are filtered client-side and need --api.start")
	fs.IntVar(&c.PageSize, "api.page-size", DefaultPageSize, "events per page, 1..1000")
	fs.DurationVar(&c.PollInterval, "api.poll-interval", DefaultPollInterval, "wait between calls once the stream is caught up (positive)")
	fs.DurationVar(&c.RequestTimeout, "api.request-timeout", DefaultRequestTimeout, "timeout of every HTTP request, body included (positive)")
	fs.DurationVar(&c.deprecatedMaxBackoff, "api.max-backoff", 0, "ignored (deprecated): see --pipeline.retry-max")
	fs.IntVar(&c.deprecatedMaxMalformed, "api.max-malformed", 0, "ignored (deprecated): see --pipeline.retry-max")
	for _, name := range []string{"api.max-backoff", "api.max-malformed"} {
		if err := fs.MarkDeprecated(name, deprecatedRetry); err != nil {
			panic(err) // the flag was just defined
		}
	}
	fs.IntVar(&c.Prefetch, "api.prefetch", DefaultPrefetch, "pages fetched ahead while the current one is written, 1..64")
	fs.BoolVar(&c.EnrichPolicyLocators, "enrich.policy-locators", false, "suite: complete billing events' partial policy-locator lists through the billing API")
	fs.IntVar(&c.EnrichConcurrency, "enrich.concurrency", DefaultEnrichConcurrency, "concurrent billing look-ups, 1..64")
	fs.IntVar(&c.EnrichCacheSize, "enrich.cache-size", DefaultEnrichCacheSize, "billing look-ups kept in the LRU cache (at least 1)")
	fs.DurationVar(&c.EnrichGiveUp, "enrich.give-up", DefaultEnrichGiveUp, "an event whose look-up keeps failing this long is written with its policy list marked incomplete (policy_locators_complete = 0) and counted, instead of holding the stream back (positive)")
	fs.IntVar(&c.MaxConcurrency, "api.max-concurrency", DefaultMaxConcurrency, "most API requests under way at once, pages and look-ups together, 1..64: the ceiling of the adaptive limit (halved on 429/5xx/timeouts, +1 per round of successes); a 429 pauses every request for its Retry-After")
	fs.IntVar(&c.BackfillConcurrency, "api.backfill-concurrency", DefaultBackfillConcurrency, "time windows read at once when the start is far behind now, 1..64 (1: one sequential stream)")
	fs.DurationVar(&c.BackfillMargin, "api.backfill-margin", DefaultBackfillMargin, "backfill windows end this far before the start-up time; the open tail window reads the rest and goes on live (positive)")
}

// Validate returns every problem of c at once, joined, or nil. It reads the
// token file to check it, and makes no connection.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Flavor {
	case source.FlavorSuite, source.FlavorClassic:
	default:
		bad("--api.flavor %q: want %q or %q", c.Flavor, source.FlavorSuite, source.FlavorClassic)
	}
	if c.URL == "" {
		bad("--api.url is required")
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("--api.url %q: want an http:// or https:// URL", c.URL)
	}
	if c.Flavor == source.FlavorSuite {
		if c.Tenant == "" {
			bad("--api.tenant is required for the suite flavor")
		} else if !uuidRE.MatchString(c.Tenant) {
			bad("--api.tenant %q: the suite's tenant locator is a UUID (such as 7d2f8c3e-5b1a-4c6e-9f0d-2a4b6c8e0f13)", c.Tenant)
		}
		if c.Attributed {
			bad("--api.attributed applies to the classic flavor only")
		}
	}
	if c.Flavor == source.FlavorClassic && c.EnrichPolicyLocators {
		bad("--enrich.policy-locators applies to the suite flavor only")
	}
	if c.Token != "" && c.TokenFile != "" {
		bad("set one of --api.token and --api.token-file, not both")
	}
	if c.TokenFile != "" {
		if tok, err := readTokenFile(c.TokenFile); err != nil {
			bad("--api.token-file: %w", err)
		} else if tok == "" {
			bad("--api.token-file %s is empty", c.TokenFile)
		}
	}
	// Zero takes the default in a Config built in code; on the command
	// line every value must be in its range.
	least := 0
	if c.fromFlags {
		least = 1
	}
	if c.PageSize < least || c.PageSize > MaxPageSize {
		bad("--api.page-size %d: want 1..%d", c.PageSize, MaxPageSize)
	}
	if c.Start.IsZero() && len(c.Types) == 0 {
		bad("set --api.start or --api.types: the first call needs a filter")
	}
	if len(c.Types) > 1 && c.Start.IsZero() {
		bad("--api.types lists %d types: the API filters one type per call, so the others are filtered client-side, which needs --api.start", len(c.Types))
	}
	for _, t := range c.Types {
		if strings.TrimSpace(t) == "" {
			bad("--api.types has an empty type")
		}
	}
	if !c.End.IsZero() && !c.Start.IsZero() && c.End.Before(c.Start) {
		bad("--api.end %s is before --api.start %s", c.End.UTC().Format(time.RFC3339), c.Start.UTC().Format(time.RFC3339))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--api.poll-interval", c.PollInterval}, {"--api.request-timeout", c.RequestTimeout}} {
		if d.v < time.Duration(least) {
			bad("%s %s: want a positive duration", d.name, d.v)
		}
	}
	if c.Prefetch < least || c.Prefetch > maxPrefetch {
		bad("--api.prefetch %d: want 1..%d", c.Prefetch, maxPrefetch)
	}
	if c.EnrichConcurrency < least || c.EnrichConcurrency > 64 {
		bad("--enrich.concurrency %d: want 1..64", c.EnrichConcurrency)
	}
	if c.EnrichGiveUp < time.Duration(least) {
		bad("--enrich.give-up %s: want a positive duration", c.EnrichGiveUp)
	}
	if c.MaxConcurrency < least || c.MaxConcurrency > maxConcurrency {
		bad("--api.max-concurrency %d: want 1..%d", c.MaxConcurrency, maxConcurrency)
	}
	if c.BackfillConcurrency < least || c.BackfillConcurrency > maxConcurrency {
		bad("--api.backfill-concurrency %d: want 1..%d", c.BackfillConcurrency, maxConcurrency)
	}
	if c.fromFlags && c.BackfillMargin <= 0 {
		bad("--api.backfill-margin %s: want a positive duration", c.BackfillMargin)
	}
	if c.EnrichCacheSize < least {
		bad("--enrich.cache-size %d: want at least 1", c.EnrichCacheSize)
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.EnrichConcurrency == 0 {
		c.EnrichConcurrency = DefaultEnrichConcurrency
	}
	if c.EnrichCacheSize == 0 {
		c.EnrichCacheSize = DefaultEnrichCacheSize
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = DefaultMaxConcurrency
	}
	if c.EnrichGiveUp == 0 {
		c.EnrichGiveUp = DefaultEnrichGiveUp
	}
	if c.BackfillConcurrency == 0 {
		c.BackfillConcurrency = 1 // in code, windows are asked for; the flag's default is DefaultBackfillConcurrency
	}
	switch {
	case c.BackfillMargin == 0:
		c.BackfillMargin = DefaultBackfillMargin
	case c.BackfillMargin < 0:
		c.BackfillMargin = 0
	}
	if c.Tenant == "" && c.Flavor == source.FlavorClassic {
		if u, err := url.Parse(c.URL); err == nil {
			c.Tenant = u.Hostname()
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// String describes c for logs with the token redacted.
func (c Config) String() string {
	tok := ""
	if c.Token != "" {
		tok = "[redacted]"
	}
	return fmt.Sprintf("eventapi.Config{Flavor:%s URL:%s Tenant:%s Token:%s TokenFile:%s Attributed:%t Start:%s End:%s Types:%v PageSize:%d}",
		c.Flavor, c.URL, c.Tenant, tok, c.TokenFile, c.Attributed, formatTime(c.Start), formatTime(c.End), c.Types, c.PageSize)
}

// LogValue makes slog print c without its token.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// ParseTime parses a flag's timestamp: RFC 3339 (with or without fractional
// seconds), a date (YYYY-MM-DD, midnight UTC), milliseconds since the epoch,
// or "now" (the moment it is parsed, to the millisecond).
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if s == "now" {
		return time.Now().UTC().Truncate(time.Millisecond), nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("timestamp %q: want RFC 3339 (2024-01-31T00:00:00Z), a date, milliseconds since the epoch or now", s)
}

// timeValue is a pflag.Value for a timestamp flag.
type timeValue struct{ t *time.Time }

func (v timeValue) String() string {
	if v.t == nil {
		return ""
	}
	return formatTime(*v.t)
}

func (v timeValue) Set(s string) error {
	t, err := ParseTime(s)
	if err != nil {
		return err
	}
	*v.t = t
	return nil
}

func (v timeValue) Type() string { return "time" }

// readTokenFile returns the trimmed content of a token file.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
