// Package metrics holds every Prometheus metric tributary exports, registered
// on one registry of its own together with the Go, process and build-info
// collectors. Names follow tributary_<subsystem>_<name>_<unit>, counters end
// in _total, and every label takes its values from a bounded set.
//
// docs/metrics.md lists the metrics; TestMetricsDoc fails when it is stale.
package metrics

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/tributary-cdc/tributary/mapping"
)

// Namespace starts the name of every tributary metric.
const Namespace = "tributary"

// Components are the values of the component label of PipelineAttempts,
// PipelineFailures and PipelineComponentHealthy: pipeline.Component*.
const (
	ComponentSource     = "source"
	ComponentSink       = "sink"
	ComponentCheckpoint = "checkpoint"
	ComponentEnrich     = "enrich"
)

// Outcomes are the values of the outcome label of PipelineAttempts:
// pipeline.Outcome*.
const (
	OutcomeOK        = "ok"
	OutcomeTransient = "transient"
	OutcomePermanent = "permanent"
	OutcomePoison    = "poison"
	OutcomeOther     = "other" // a value outside the set, kept bounded
)

// Enrichment lookup results are the values of the result label of EnrichLookups.
const (
	LookupHit      = "hit"       // answered from the cache
	LookupMiss     = "miss"      // fetched from the API
	LookupNotFound = "not_found" // the API does not know the locator
	LookupError    = "error"     // the lookup failed
	LookupGaveUp   = "gave_up"   // failed for --enrich.give-up: the event was written with its list incomplete
)

var (
	components = []string{ComponentSource, ComponentSink, ComponentCheckpoint, ComponentEnrich}
	outcomes   = []string{OutcomeOK, OutcomeTransient, OutcomePermanent, OutcomePoison}
	lookups    = []string{LookupHit, LookupMiss, LookupNotFound, LookupError, LookupGaveUp}
)

// Metric types, as the exposition format names them.
const (
	TypeCounter   = "counter"
	TypeGauge     = "gauge"
	TypeHistogram = "histogram"
)

// Spec describes one tributary metric: what docs/metrics.md lists.
type Spec struct {
	Name   string   // the full metric name
	Type   string   // TypeCounter, TypeGauge or TypeHistogram
	Help   string   // the HELP text
	Labels []string // variable and constant label names, in order
}

// Buckets of the histograms, in seconds or events.
var (
	durationBuckets   = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	batchEventBuckets = prometheus.ExponentialBuckets(1, 4, 9) // 1 … 65536
)

// Metrics is every tributary metric. The exported fields may be used directly
// by the components that own them; the helper methods keep labels bounded.
// All fields are safe for concurrent use.
type Metrics struct {
	// SourceEventsRead counts events read from the source, by mapping.TypeClass.
	SourceEventsRead *prometheus.CounterVec // class
	// SourceRequests counts event-stream API requests by HTTP status code
	// ("error" when no response arrived); see ObserveRequest.
	SourceRequests *prometheus.CounterVec // code
	// SourceRequestDuration observes event-stream API request durations.
	SourceRequestDuration prometheus.Histogram

	// SinkEventsWritten counts events whose rows ClickHouse accepted, by mapping.TypeClass.
	SinkEventsWritten *prometheus.CounterVec // class
	// SinkRowsWritten counts rows ClickHouse accepted, by table.
	SinkRowsWritten *prometheus.CounterVec // table
	// SinkInsertDuration observes the duration of one INSERT batch, by table.
	SinkInsertDuration *prometheus.HistogramVec // table

	// PipelineBatches counts batches written and checkpointed.
	PipelineBatches prometheus.Counter
	// PipelineBatchEvents observes the number of events per batch.
	PipelineBatchEvents prometheus.Histogram
	// PipelineBatchDuration observes the time to write one batch to ClickHouse, retries included.
	PipelineBatchDuration prometheus.Histogram
	// PipelineLag is the end-to-end lag measured when the last batch was
	// written: that time minus the timestamp of its newest event.
	PipelineLag prometheus.Gauge
	// PipelineLastEventTimestamp is the timestamp of the newest event written, in Unix seconds.
	PipelineLastEventTimestamp prometheus.Gauge

	// PipelineAttempts counts the calls the pipeline made to each component
	// (every source read, INSERT batch, checkpoint save, …), by outcome:
	// ok, transient (retried), permanent (the pipeline stops), poison (the
	// input was refused for its content and isolated).
	PipelineAttempts *prometheus.CounterVec // component, outcome
	// PipelineFailures counts failures that were not retried away, by component.
	PipelineFailures *prometheus.CounterVec // component
	// PipelineComponentHealthy is 1 while a component's last attempt
	// succeeded, 0 while it fails.
	PipelineComponentHealthy *prometheus.GaugeVec // component
	// PipelineWindowBatches is how many batches the window holds: taken by
	// the batcher and not yet acknowledged (at most writers + in-flight).
	PipelineWindowBatches prometheus.Gauge

	// EventsRejected counts events quarantined in _tributary_rejects, by
	// reason (mapping.RejectKinds).
	EventsRejected *prometheus.CounterVec // reason

	// MappingUnknownEvents counts events of a type the mapping does not know
	// (stored with their raw payload only).
	MappingUnknownEvents prometheus.Counter
	// MappingParseErrors counts events whose payload could not be parsed.
	MappingParseErrors prometheus.Counter

	// CheckpointSaves counts checkpoints saved.
	CheckpointSaves prometheus.Counter
	// CheckpointLastSave is the time of the last saved checkpoint, in Unix
	// seconds; tributary_checkpoint_age_seconds is computed from it.
	CheckpointLastSave prometheus.Gauge
	// CheckpointEvents is the number of events up to the saved position since the process started.
	CheckpointEvents prometheus.Gauge

	// PGReplSlotLagBytes is the replication slot's lag: the server's current
	// WAL position minus the slot's confirmed flush position.
	PGReplSlotLagBytes prometheus.Gauge
	// PGReplConfirmedFlushLSN is the last LSN acknowledged to PostgreSQL, as a number.
	PGReplConfirmedFlushLSN prometheus.Gauge
	// PGReplRows counts rows read from PostgreSQL (initial snapshot and WAL).
	PGReplRows prometheus.Counter

	// EnrichLookups counts enrichment lookups by result (LookupHit …).
	EnrichLookups *prometheus.CounterVec // result

	// SourceAPIConcurrency is the request budget's current concurrency
	// limit (AIMD between 1 and --api.max-concurrency).
	SourceAPIConcurrency prometheus.Gauge
	// SourceAPIInFlight is the number of API requests under way.
	SourceAPIInFlight prometheus.Gauge
	// SourceAPIRequests counts API requests by what they told the budget (APIOutcomes).
	SourceAPIRequests *prometheus.CounterVec // outcome
	// SourceAPIThrottled counts the seconds every request was paused by 429s.
	SourceAPIThrottled prometheus.Counter
	// SourceBackfillWindows is the number of backfill windows, by state (total, done).
	SourceBackfillWindows *prometheus.GaugeVec // state

	reg   *prometheus.Registry
	specs []Spec
	start time.Time
	now   func() time.Time

	pgMu   sync.Mutex
	pgRows uint64 // the rowsTotal of the last PGRepl call

	apiMu        sync.Mutex
	apiRequests  map[string]uint64 // the requests of the last APIBudget call
	apiThrottled time.Duration     // the throttled time of the last APIBudget call
}

// APIOutcomes are the values of the outcome label of SourceAPIRequests:
// eventapi.Outcome*.
var APIOutcomes = []string{"ok", "throttled", "overload", "cancelled"}

// New returns every metric registered on a new registry, together with the
// Go, process and build-info collectors and tributary_build_info.
func New(version, commit string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), start: time.Now(), now: time.Now}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)

	build := m.gaugeWith("build_info", "Always 1; its labels tell the version, the commit and the Go version of the binary.",
		prometheus.Labels{"version": version, "commit": commit, "goversion": runtime.Version()}, "version", "commit", "goversion")
	build.Set(1)

	m.SourceEventsRead = m.counterVec("source_events_read_total", "Events read from the source, by event type class.", "class")
	m.SourceRequests = m.counterVec("source_requests_total", `Event-stream API requests by HTTP status code ("error" when no response arrived).`, "code")
	m.SourceRequestDuration = m.histogram("source_request_duration_seconds", "Duration of event-stream API requests.", durationBuckets)

	m.SinkEventsWritten = m.counterVec("sink_events_written_total", "Events whose rows ClickHouse accepted, by event type class.", "class")
	m.SinkRowsWritten = m.counterVec("sink_rows_written_total", "Rows ClickHouse accepted, by table.", "table")
	m.SinkInsertDuration = m.histogramVec("sink_insert_duration_seconds", "Duration of one INSERT of a batch of rows into ClickHouse, by table.", durationBuckets, "table")

	m.PipelineBatches = m.counter("pipeline_batches_total", "Batches written to ClickHouse and checkpointed.")
	m.PipelineBatchEvents = m.histogram("pipeline_batch_events", "Events per batch.", batchEventBuckets)
	m.PipelineBatchDuration = m.histogram("pipeline_batch_duration_seconds", "Time to write one batch to ClickHouse, retries included.", durationBuckets)
	m.PipelineLag = m.gauge("pipeline_lag_seconds", "End-to-end lag when the last batch was written: that time minus the timestamp of the batch's newest event.")
	m.PipelineLastEventTimestamp = m.gauge("pipeline_last_event_timestamp_seconds", "Timestamp of the newest event written to ClickHouse, in Unix seconds.")

	m.PipelineAttempts = m.counterVec("pipeline_attempts_total", "Calls the pipeline made to a component (source, sink, checkpoint, enrich), by outcome (ok, transient, permanent, poison).", "component", "outcome")
	m.PipelineFailures = m.counterVec("pipeline_failures_total", "Failures of a component that were not retried away (the pipeline stopped on them).", "component")
	m.PipelineComponentHealthy = m.gaugeVec("pipeline_component_healthy", "1 while the component's last attempt succeeded, 0 while it fails.", "component")
	m.PipelineWindowBatches = m.gauge("pipeline_window_batches", "Batches in the window: taken by the batcher and not yet acknowledged (at most --pipeline.writers + --pipeline.in-flight).")

	m.EventsRejected = m.counterVec("events_rejected_total", "Events quarantined in the _tributary_rejects table, by reason (missing_field, invalid_json, bad_time, refused, other).", "reason")

	m.MappingUnknownEvents = m.counter("mapping_unknown_events_total", "Events of a type the mapping does not know, stored with their raw payload only.")
	m.MappingParseErrors = m.counter("mapping_parse_errors_total", "Events whose payload could not be parsed.")

	m.CheckpointSaves = m.counter("checkpoint_saves_total", "Checkpoints saved.")
	m.CheckpointLastSave = m.gauge("checkpoint_last_save_timestamp_seconds", "Time of the last saved checkpoint, in Unix seconds (0 before the first).")
	m.gaugeFunc("checkpoint_age_seconds", "Seconds since the last saved checkpoint, or since the process started when none was saved yet.",
		func() float64 { return m.CheckpointAge().Seconds() })
	m.CheckpointEvents = m.gauge("checkpoint_events", "Events up to the saved position, counted since the process started.")

	m.PGReplSlotLagBytes = m.gauge("pgrepl_slot_lag_bytes", "Bytes of WAL between the server's current position and the slot's confirmed flush position.")
	m.PGReplConfirmedFlushLSN = m.gauge("pgrepl_confirmed_flush_lsn", "Last LSN acknowledged to PostgreSQL, as a number.")
	m.PGReplRows = m.counter("pgrepl_rows_total", "Rows read from PostgreSQL, by the initial snapshot and from the WAL.")

	m.EnrichLookups = m.counterVec("enrich_lookups_total", "Enrichment lookups by result (hit: memory cache, stored: read from the _tributary_lookups table, miss: asked the API, not_found, error, gave_up: failing for --enrich.give-up, the event written with its list incomplete).", "result")

	m.SourceAPIConcurrency = m.gauge("source_api_concurrency_requests", "Current concurrency limit of the API request budget: halved on 429, 5xx and timeouts, +1 per round of successes, between 1 and --api.max-concurrency.")
	m.SourceAPIInFlight = m.gauge("source_api_in_flight_requests", "API requests under way (pages of every window and look-ups).")
	m.SourceAPIRequests = m.counterVec("source_api_requests_total", "API requests by what they told the request budget: ok, throttled (429), overload (5xx, 408, timeout, no answer), cancelled.", "outcome")
	m.SourceAPIThrottled = m.counter("source_api_throttled_seconds_total", "Seconds during which every API request was paused by a 429's Retry-After.")
	m.SourceBackfillWindows = m.gaugeVec("source_backfill_windows", "Backfill time windows of the API source, by state: total (planned) and done (read to their end and checkpointed by the source).", "state")
	for _, o := range APIOutcomes {
		m.SourceAPIRequests.WithLabelValues(o)
	}
	m.SourceBackfillWindows.WithLabelValues("total")
	m.SourceBackfillWindows.WithLabelValues("done")

	// Series of the bounded label sets exist from the start, at zero, so that
	// rate() and alerts see them before the first increment.
	for _, c := range components {
		m.PipelineFailures.WithLabelValues(c)
		m.PipelineComponentHealthy.WithLabelValues(c).Set(1)
		for _, o := range outcomes {
			m.PipelineAttempts.WithLabelValues(c, o)
		}
	}
	for _, r := range mapping.RejectKinds {
		m.EventsRejected.WithLabelValues(r)
	}
	for _, r := range lookups {
		m.EnrichLookups.WithLabelValues(r)
	}
	return m
}

// Registry returns the registry every metric is registered on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Specs returns the description of every tributary metric, in registration order.
func (m *Metrics) Specs() []Spec { return append([]Spec(nil), m.specs...) }

// Attempt counts one call of component (a Component constant) with its
// outcome (an Outcome constant) and sets the component's health gauge.
func (m *Metrics) Attempt(component, outcome string) {
	component = bounded(component, components)
	m.PipelineAttempts.WithLabelValues(component, boundedOr(outcome, outcomes, OutcomeOther)).Inc()
	healthy := 0.0
	if outcome == OutcomeOK || outcome == OutcomePoison {
		healthy = 1
	}
	m.PipelineComponentHealthy.WithLabelValues(component).Set(healthy)
}

// Failure counts one failure of component that was not retried away.
func (m *Metrics) Failure(component string) {
	m.PipelineFailures.WithLabelValues(bounded(component, components)).Inc()
}

// ObserveInsert records the duration of one successful INSERT into table, in
// the shape of the ClickHouse sink's OnInsert hook. Rows are counted by
// PipelineObserver once the whole batch is written, not here.
func (m *Metrics) ObserveInsert(table string, rows int, took time.Duration) {
	m.SinkInsertDuration.WithLabelValues(table).Observe(took.Seconds())
}

// ObserveRequest records one event-stream API request: its HTTP status code
// (0 when no response arrived) and its duration. It has the shape of the
// event-stream client's OnRequest hook.
func (m *Metrics) ObserveRequest(code int, d time.Duration) {
	label := "error"
	switch {
	case code >= 100 && code <= 599:
		label = strconv.Itoa(code)
	case code != 0:
		label = "other"
	}
	m.SourceRequests.WithLabelValues(label).Inc()
	m.SourceRequestDuration.Observe(d.Seconds())
}

// ObserveBatch records one batch written: its number of events, the time
// its write took (retries included), and the timestamp of its newest event
// (ignored when zero), from which it sets the end-to-end lag.
func (m *Metrics) ObserveBatch(events int, took time.Duration, newest time.Time) {
	m.PipelineBatches.Inc()
	m.PipelineBatchEvents.Observe(float64(events))
	m.PipelineBatchDuration.Observe(took.Seconds())
	if !newest.IsZero() {
		m.PipelineLastEventTimestamp.Set(float64(newest.UnixMilli()) / 1e3)
		m.PipelineLag.Set(math.Max(0, m.now().Sub(newest).Seconds()))
	}
}

// CheckpointSaved records one saved checkpoint at time at, with events the
// number of events up to its position.
func (m *Metrics) CheckpointSaved(at time.Time, events uint64) {
	m.CheckpointSaves.Inc()
	m.CheckpointLastSave.Set(float64(at.UnixMilli()) / 1e3)
	m.CheckpointEvents.Set(float64(events))
}

// CheckpointAge returns the time since the last saved checkpoint (as set in
// CheckpointLastSave), or since New when none was saved yet. Readiness
// compares it with --web.ready-max-checkpoint-age.
func (m *Metrics) CheckpointAge() time.Duration {
	since := m.start
	var d dto.Metric
	if err := m.CheckpointLastSave.Write(&d); err == nil && d.GetGauge().GetValue() > 0 {
		since = time.UnixMilli(int64(d.GetGauge().GetValue() * 1e3))
	}
	if age := m.now().Sub(since); age > 0 {
		return age
	}
	return 0
}

func bounded(v string, set []string) string { return boundedOr(v, set, "other") }

// boundedOr returns v when set holds it, else other.
func boundedOr(v string, set []string, other string) string {
	for _, s := range set {
		if v == s {
			return v
		}
	}
	return other
}

func (m *Metrics) add(c prometheus.Collector, s Spec) {
	s.Name = prometheus.BuildFQName(Namespace, "", s.Name)
	m.reg.MustRegister(c)
	m.specs = append(m.specs, s)
}

func (m *Metrics) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	m.add(c, Spec{Name: name, Type: TypeCounter, Help: help})
	return c
}

func (m *Metrics) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	m.add(c, Spec{Name: name, Type: TypeCounter, Help: help, Labels: labels})
	return c
}

func (m *Metrics) gauge(name, help string) prometheus.Gauge {
	return m.gaugeWith(name, help, nil)
}

func (m *Metrics) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	m.add(g, Spec{Name: name, Type: TypeGauge, Help: help, Labels: labels})
	return g
}

func (m *Metrics) gaugeWith(name, help string, constLabels prometheus.Labels, order ...string) prometheus.Gauge {
	if len(order) != len(constLabels) {
		panic(fmt.Sprintf("metrics: %s: label order %v does not match %v", name, order, constLabels))
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help, ConstLabels: constLabels})
	m.add(g, Spec{Name: name, Type: TypeGauge, Help: help, Labels: order})
	return g
}

func (m *Metrics) gaugeFunc(name, help string, f func() float64) {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, f)
	m.add(g, Spec{Name: name, Type: TypeGauge, Help: help})
}

func (m *Metrics) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	m.add(h, Spec{Name: name, Type: TypeHistogram, Help: help})
	return h
}

func (m *Metrics) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	m.add(h, Spec{Name: name, Type: TypeHistogram, Help: help, Labels: labels})
	return h
}
