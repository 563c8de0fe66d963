package emulator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"time"

	"github.com/spf13/pflag"

	"github.com/tributary-cdc/tributary/internal/flagdoc"
)

// Flavors of the event stream the emulator serves.
const (
	FlavorSuite   = "suite"
	FlavorClassic = "classic"
)

// Defaults of Config, applied by New for zero fields.
const (
	DefaultPolicies        = 200
	DefaultPageSize        = 100
	DefaultMaxPageSize     = 1000
	DefaultPGTable         = "socotra_events"
	DefaultListenAddress   = "127.0.0.1:8089"
	DefaultSignatureHeader = "X-Socotra-Signature"
	DefaultWebhookTimeout  = 5 * time.Second
)

// DefaultStart is where simulated history begins when Config.Start is zero.
var DefaultStart = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// FaultConfig sets the faults the emulator injects into the data endpoints
// (event pages, single events, request events and billing look-ups). Every
// rate is a probability per request in [0, 1]; all are off by default. The
// faults drawn depend only on the seed and the order of requests.
type FaultConfig struct {
	// Latency is added before every answer.
	Latency time.Duration
	// ErrorRate is the share of requests answered 500 or 503 (alternately drawn).
	ErrorRate float64
	// ThrottleRate is the share of requests answered 429 with Retry-After.
	ThrottleRate float64
	// RetryAfter is the Retry-After value of a 429, in whole seconds (default 1).
	RetryAfter time.Duration
	// TruncateRate is the share of 200 answers whose JSON body is cut in half.
	TruncateRate float64
	// MalformedRate is the share of 200 answers whose JSON body is made invalid.
	MalformedRate float64
	// ResetRate is the share of requests whose connection is reset (TCP RST)
	// without an answer.
	ResetRate float64
	// DuplicateRate is the share of follow-up pages (called with a token) that
	// start up to three events before the token's position, so that events at
	// the page boundary are served twice.
	DuplicateRate float64
}

// Config is everything the emulator needs; zero fields take defaults.
type Config struct {
	// Flavor is "suite" (default) or "classic".
	Flavor string
	// Tenant is the tenant locator (a UUID); default derived from Seed.
	Tenant string
	// Seed makes the generated history, the faults and the paging-token key
	// reproducible.
	Seed int64
	// Policies is the number of policies kept in force by the simulation.
	Policies int
	// Events is the number of events preloaded by New: it generates whole
	// requests until at least this many events exist.
	Events int
	// Rate is the number of live events appended per second by Start; 0 turns
	// live traffic off.
	Rate float64
	// Token, when set, is the bearer token every request must carry.
	Token string
	// PageSizeDefault and PageSizeMax bound pageSize (defaults 100 and 1000).
	PageSizeDefault int
	PageSizeMax     int
	// Faults are the injected faults, off by default.
	Faults FaultConfig
	// PGDSN, when set, makes the emulator also write every event to a
	// PostgreSQL table, one transaction per request.
	PGDSN string
	// PGTable is the name of that table (default "socotra_events").
	PGTable string
	// Start is the simulated time of the first event (default 2024-01-01 UTC;
	// `tributary emulate` chooses it with StartBefore instead).
	Start time.Time
	// LiveClock stamps events appended after the preload (live traffic and
	// Append) with the wall-clock time instead of the simulated time, never
	// earlier than the last event, so that lag measured against the wall
	// clock is meaningful. The stream then depends on when events are appended.
	LiveClock bool
	// ListenAddress is where `tributary emulate` listens.
	ListenAddress string
	// SignatureHeader is the webhook header carrying the HMAC-SHA256 of the
	// body when the webhook has a secret (default "X-Socotra-Signature").
	SignatureHeader string
	// WebhookTimeout bounds one webhook delivery (default 5s).
	WebhookTimeout time.Duration
}

// RegisterFlags adds the emulator's flags to fs, with c's current values as defaults.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	tenant, start := c.Tenant, c.Start
	c.applyDefaults()
	// Derived later, when the seed and the other flags are known.
	c.Tenant, c.Start = tenant, start
	fs.StringVar(&c.Flavor, "emulator.flavor", c.Flavor, `flavor of the event stream: "suite" or "classic"`)
	fs.StringVar(&c.Tenant, "emulator.tenant", c.Tenant, "tenant locator (a UUID); default derived from the seed")
	fs.Int64Var(&c.Seed, "emulator.seed", c.Seed, "seed of the generated history, the faults and the paging-token key")
	fs.IntVar(&c.Policies, "emulator.policies", c.Policies, "policies kept in force by the simulation")
	fs.IntVar(&c.Events, "emulator.events", c.Events, "events to preload (whole requests, at least this many)")
	fs.Float64Var(&c.Rate, "emulator.rate", c.Rate, "live events appended per second (0: none)")
	fs.StringVar(&c.Token, "emulator.token", c.Token, "bearer token required on every request (empty: no authentication)")
	fs.IntVar(&c.PageSizeDefault, "emulator.page-size-default", c.PageSizeDefault, "page size when the request has none")
	fs.IntVar(&c.PageSizeMax, "emulator.page-size-max", c.PageSizeMax, "largest page size accepted")
	fs.StringVar(&c.PGDSN, "pg.dsn", c.PGDSN, "PostgreSQL DSN: also write every event to a table there")
	fs.StringVar(&c.PGTable, "pg.table", c.PGTable, "PostgreSQL table the events are written to")
	for _, name := range []string{"pg.dsn", "pg.table"} {
		_ = fs.SetAnnotation(name, flagdoc.TitleAnnotation, []string{"PostgreSQL copy of the stream"})
	}
	fs.TimeVar(&c.Start, "emulator.start", c.Start, []string{time.RFC3339, "2006-01-02"}, "simulated time of the first event (default: chosen back from now so that the preloaded history ends before the present; the same seed and start give the same history)")
	fs.BoolVar(&c.LiveClock, "emulator.live-clock", c.LiveClock, "stamp live and appended events with the wall clock (never earlier than the last event)")
	fs.StringVar(&c.ListenAddress, "web.listen-address", c.ListenAddress, "address the HTTP server listens on")
	fs.StringVar(&c.SignatureHeader, "emulator.webhook-signature-header", c.SignatureHeader, "header carrying a webhook body's HMAC-SHA256")
	fs.DurationVar(&c.WebhookTimeout, "emulator.webhook-timeout", c.WebhookTimeout, "timeout of one webhook delivery")
	fs.DurationVar(&c.Faults.Latency, "fault.latency", c.Faults.Latency, "latency added to every data request")
	fs.Float64Var(&c.Faults.ErrorRate, "fault.error-rate", c.Faults.ErrorRate, "share of data requests answered 500 or 503")
	fs.Float64Var(&c.Faults.ThrottleRate, "fault.throttle-rate", c.Faults.ThrottleRate, "share of data requests answered 429 with Retry-After")
	fs.DurationVar(&c.Faults.RetryAfter, "fault.retry-after", c.Faults.RetryAfter, "Retry-After of a 429 (whole seconds)")
	fs.Float64Var(&c.Faults.TruncateRate, "fault.truncate-rate", c.Faults.TruncateRate, "share of answers whose JSON body is cut short")
	fs.Float64Var(&c.Faults.MalformedRate, "fault.malformed-rate", c.Faults.MalformedRate, "share of answers whose JSON body is invalid")
	fs.Float64Var(&c.Faults.ResetRate, "fault.reset-rate", c.Faults.ResetRate, "share of data requests whose connection is reset")
	fs.Float64Var(&c.Faults.DuplicateRate, "fault.duplicate-rate", c.Faults.DuplicateRate, "share of follow-up pages repeating events across the page boundary")
}

// applyDefaults fills zero fields with their defaults.
func (c *Config) applyDefaults() {
	if c.Flavor == "" {
		c.Flavor = FlavorSuite
	}
	if c.Tenant == "" {
		c.Tenant = uuidString(rand.New(rand.NewPCG(uint64(c.Seed), 0x7e4a47)))
	}
	if c.Policies == 0 {
		c.Policies = DefaultPolicies
	}
	if c.PageSizeDefault == 0 {
		c.PageSizeDefault = DefaultPageSize
	}
	if c.PageSizeMax == 0 {
		c.PageSizeMax = DefaultMaxPageSize
	}
	if c.PGTable == "" {
		c.PGTable = DefaultPGTable
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	if c.ListenAddress == "" {
		c.ListenAddress = DefaultListenAddress
	}
	if c.SignatureHeader == "" {
		c.SignatureHeader = DefaultSignatureHeader
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = DefaultWebhookTimeout
	}
	if c.Faults.RetryAfter == 0 {
		c.Faults.RetryAfter = time.Second
	}
}

var (
	uuidRE  = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
)

// Validate returns every problem of c at once; zero fields are valid (they
// take defaults).
func (c Config) Validate() error {
	c.applyDefaults()
	var errs []error
	if c.Flavor != FlavorSuite && c.Flavor != FlavorClassic {
		errs = append(errs, fmt.Errorf("emulator.flavor %q: want %q or %q", c.Flavor, FlavorSuite, FlavorClassic))
	}
	if !uuidRE.MatchString(c.Tenant) {
		errs = append(errs, fmt.Errorf("emulator.tenant %q: want a UUID", c.Tenant))
	}
	if c.Policies < 1 || c.Policies > 10_000_000 {
		errs = append(errs, fmt.Errorf("emulator.policies %d: want 1 to 10000000", c.Policies))
	}
	if c.Events < 0 {
		errs = append(errs, fmt.Errorf("emulator.events %d: want 0 or more", c.Events))
	}
	if c.Rate < 0 || c.Rate > 1e6 {
		errs = append(errs, fmt.Errorf("emulator.rate %g: want 0 to 1000000 events/s", c.Rate))
	}
	if c.PageSizeMax < 1 {
		errs = append(errs, fmt.Errorf("emulator.page-size-max %d: want at least 1", c.PageSizeMax))
	}
	if c.PageSizeDefault < 1 || c.PageSizeDefault > c.PageSizeMax {
		errs = append(errs, fmt.Errorf("emulator.page-size-default %d: want 1 to page-size-max (%d)", c.PageSizeDefault, c.PageSizeMax))
	}
	if !identRE.MatchString(c.PGTable) {
		errs = append(errs, fmt.Errorf("pg.table %q: want a plain SQL identifier", c.PGTable))
	}
	if c.WebhookTimeout < 0 {
		errs = append(errs, fmt.Errorf("emulator.webhook-timeout %s: want a positive duration", c.WebhookTimeout))
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (f FaultConfig) validate() error {
	var errs []error
	rates := []struct {
		name string
		v    float64
	}{
		{"fault.error-rate", f.ErrorRate}, {"fault.throttle-rate", f.ThrottleRate},
		{"fault.truncate-rate", f.TruncateRate}, {"fault.malformed-rate", f.MalformedRate},
		{"fault.reset-rate", f.ResetRate}, {"fault.duplicate-rate", f.DuplicateRate},
	}
	sum := 0.0
	for _, r := range rates {
		if r.v < 0 || r.v > 1 {
			errs = append(errs, fmt.Errorf("%s %g: want 0 to 1", r.name, r.v))
		}
		if r.name != "fault.duplicate-rate" {
			sum += r.v
		}
	}
	if sum > 1 {
		errs = append(errs, fmt.Errorf("fault rates other than duplicate-rate add up to %g: want at most 1", sum))
	}
	if f.Latency < 0 {
		errs = append(errs, fmt.Errorf("fault.latency %s: want 0 or more", f.Latency))
	}
	if f.RetryAfter < 0 {
		errs = append(errs, fmt.Errorf("fault.retry-after %s: want 0 or more", f.RetryAfter))
	}
	return errors.Join(errs...)
}
