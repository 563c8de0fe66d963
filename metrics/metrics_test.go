package metrics

import (
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

var update = flag.Bool("update", false, "rewrite the generated part of docs/metrics.md")

const (
	docPath   = "../docs/metrics.md"
	beginMark = "<!-- BEGIN GENERATED METRICS: go test ./metrics -run TestMetricsDoc -update -->\n"
	endMark   = "<!-- END GENERATED METRICS -->\n"
)

// docTable renders specs as the Markdown table of docs/metrics.md.
func docTable(specs []Spec) string {
	var b strings.Builder
	b.WriteString("| Metric | Type | Labels | Help |\n| --- | --- | --- | --- |\n")
	for _, s := range specs {
		labels := "—"
		if len(s.Labels) > 0 {
			labels = "`" + strings.Join(s.Labels, "`, `") + "`"
		}
		b.WriteString("| `" + s.Name + "` | " + s.Type + " | " + labels + " | " + strings.ReplaceAll(s.Help, "|", `\|`) + " |\n")
	}
	return b.String()
}

func TestMetricsDoc(t *testing.T) {
	want := docTable(New("v", "c").Specs())
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("read %s: %v", docPath, err)
	}
	doc := string(raw)
	i, j := strings.Index(doc, beginMark), strings.Index(doc, endMark)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q … %q", docPath, beginMark, endMark)
	}
	got := doc[i+len(beginMark) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(docPath, []byte(doc[:i+len(beginMark)]+want+doc[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("docs/metrics.md is stale: run `go test ./metrics -run TestMetricsDoc -update`\n got:\n%s\nwant:\n%s", got, want)
}

// gathered returns the registry's metric families after one child of every
// labelled metric was created, keyed by name.
func gathered(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	m.SourceEventsRead.WithLabelValues("policy")
	m.SourceRequests.WithLabelValues("200")
	m.SinkEventsWritten.WithLabelValues("policy")
	m.SinkRowsWritten.WithLabelValues("events")
	m.SinkInsertDuration.WithLabelValues("events")
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func TestRegistryMatchesSpecs(t *testing.T) {
	m := New("1.2.3", "abc")
	fams := gathered(t, m)
	seen := map[string]bool{}
	for _, s := range m.Specs() {
		seen[s.Name] = true
		mf, ok := fams[s.Name]
		if !ok {
			t.Errorf("%s: in Specs but not gathered", s.Name)
			continue
		}
		if got, want := strings.ToLower(mf.GetType().String()), s.Type; got != want {
			t.Errorf("%s: type %s, want %s", s.Name, got, want)
		}
		if got, want := mf.GetHelp(), s.Help; got != want {
			t.Errorf("%s: help %q, want %q", s.Name, got, want)
		}
		var got []string
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			got = append(got, lp.GetName())
		}
		want := append([]string(nil), s.Labels...)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: labels %v, want %v", s.Name, got, want)
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, Namespace+"_") && !seen[name] {
			t.Errorf("%s: gathered but missing from Specs", name)
		}
	}
	for _, name := range []string{"go_goroutines", "go_build_info", "process_start_time_seconds"} {
		if _, ok := fams[name]; !ok && (name != "process_start_time_seconds" || runtimeHasProcfs()) {
			t.Errorf("%s: the Go, process or build-info collector is not registered", name)
		}
	}
}

func runtimeHasProcfs() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

func TestNamingConventions(t *testing.T) {
	name := regexp.MustCompile(`^tributary_[a-z]+_[a-z0-9_]+$`)
	// _healthy: a 0/1 gauge; _batches and _events: counts of those things.
	units := []string{"_total", "_seconds", "_bytes", "_events", "_batches", "_lsn", "_info", "_healthy", "_requests", "_windows"}
	for _, s := range New("v", "c").Specs() {
		if !name.MatchString(s.Name) {
			t.Errorf("%s: not tributary_<subsystem>_<name>", s.Name)
		}
		if got, want := strings.HasSuffix(s.Name, "_total"), s.Type == TypeCounter; got != want {
			t.Errorf("%s: a %s whose name ends in _total is %v, want %v", s.Name, s.Type, got, want)
		}
		ok := false
		for _, u := range units {
			ok = ok || strings.HasSuffix(s.Name, u)
		}
		if !ok {
			t.Errorf("%s: name ends in none of the units %v", s.Name, units)
		}
		if !strings.HasSuffix(s.Help, ".") || len(s.Help) < 10 {
			t.Errorf("%s: help %q is not a sentence", s.Name, s.Help)
		}
	}
}

func TestBuildInfo(t *testing.T) {
	m := New("1.2.3", "abc")
	mf := gathered(t, m)["tributary_build_info"]
	if mf == nil {
		t.Fatal("tributary_build_info not gathered")
	}
	got := map[string]string{}
	for _, lp := range mf.GetMetric()[0].GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	if got["version"] != "1.2.3" || got["commit"] != "abc" || !strings.HasPrefix(got["goversion"], "go") {
		t.Errorf("build info labels = %v, want version 1.2.3, commit abc, goversion go…", got)
	}
	if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("build info value = %v, want 1", v)
	}
}

func TestAttemptAndFailureLabelsAreBounded(t *testing.T) {
	tests := []struct {
		component, outcome         string
		wantComponent, wantOutcome string
	}{
		{ComponentSink, OutcomeTransient, "sink", "transient"},
		{ComponentSource, OutcomeOK, "source", "ok"},
		{ComponentCheckpoint, OutcomePermanent, "checkpoint", "permanent"},
		{ComponentSink, OutcomePoison, "sink", "poison"},
		{"elsewhere", OutcomeOK, "other", "ok"},
		{ComponentEnrich, "dial tcp 127.0.0.1:9000: connection refused", "enrich", "other"},
	}
	for _, tt := range tests {
		m := New("v", "c")
		m.Attempt(tt.component, tt.outcome)
		m.Failure(tt.component)
		if got := testutil.ToFloat64(m.PipelineAttempts.WithLabelValues(tt.wantComponent, tt.wantOutcome)); got != 1 {
			t.Errorf("Attempt(%q, %q): attempts{%s,%s} = %v, want 1", tt.component, tt.outcome, tt.wantComponent, tt.wantOutcome, got)
		}
		if got := testutil.ToFloat64(m.PipelineFailures.WithLabelValues(tt.wantComponent)); got != 1 {
			t.Errorf("Failure(%q): failures{%s} = %v, want 1", tt.component, tt.wantComponent, got)
		}
		extra := boolInt(tt.wantComponent == "other" || tt.wantOutcome == "other")
		if got, want := testutil.CollectAndCount(m.PipelineAttempts), len(components)*len(outcomes)+extra; got != want {
			t.Errorf("Attempt(%q, %q): %d attempt series, want %d", tt.component, tt.outcome, got, want)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestObserveRequest(t *testing.T) {
	tests := []struct {
		code      int
		wantLabel string
	}{
		{200, "200"},
		{429, "429"},
		{0, "error"},
		{1000, "other"},
	}
	for _, tt := range tests {
		m := New("v", "c")
		m.ObserveRequest(tt.code, 250*time.Millisecond)
		if got := testutil.ToFloat64(m.SourceRequests.WithLabelValues(tt.wantLabel)); got != 1 {
			t.Errorf("ObserveRequest(%d): requests{code=%q} = %v, want 1", tt.code, tt.wantLabel, got)
		}
		if got := testutil.CollectAndCount(m.SourceRequests); got != 1 {
			t.Errorf("ObserveRequest(%d): %d series, want 1", tt.code, got)
		}
		var d dto.Metric
		if err := m.SourceRequestDuration.(interface{ Write(*dto.Metric) error }).Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetHistogram().GetSampleSum(); got != 0.25 {
			t.Errorf("ObserveRequest(%d): duration sum %v, want 0.25", tt.code, got)
		}
	}
}

func TestObserveBatchSetsLag(t *testing.T) {
	now := time.Date(2026, 11, 22, 22, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		newest   time.Time
		wantLag  float64
		wantLast float64
	}{
		{"behind", now.Add(-90 * time.Second), 90, float64(now.Add(-90 * time.Second).Unix())},
		{"clock skew", now.Add(5 * time.Second), 0, float64(now.Add(5 * time.Second).Unix())},
		{"no timestamp", time.Time{}, 0, 0},
	}
	for _, tt := range tests {
		m := New("v", "c")
		m.now = func() time.Time { return now }
		m.ObserveBatch(100, 2*time.Second, tt.newest)
		if got := testutil.ToFloat64(m.PipelineLag); got != tt.wantLag {
			t.Errorf("%s: lag %v, want %v", tt.name, got, tt.wantLag)
		}
		if got := testutil.ToFloat64(m.PipelineLastEventTimestamp); got != tt.wantLast {
			t.Errorf("%s: last event timestamp %v, want %v", tt.name, got, tt.wantLast)
		}
		if got := testutil.ToFloat64(m.PipelineBatches); got != 1 {
			t.Errorf("%s: batches %v, want 1", tt.name, got)
		}
	}
}

func TestCheckpointAge(t *testing.T) {
	start := time.Date(2026, 11, 22, 22, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		saved time.Time // zero: never saved
		now   time.Time
		want  time.Duration
	}{
		{"never saved counts from start", time.Time{}, start.Add(time.Minute), time.Minute},
		{"saved", start.Add(10 * time.Second), start.Add(70 * time.Second), time.Minute},
		{"saved in the future", start.Add(10 * time.Second), start, 0},
	}
	for _, tt := range tests {
		m := New("v", "c")
		m.start = start
		m.now = func() time.Time { return tt.now }
		if !tt.saved.IsZero() {
			m.CheckpointSaved(tt.saved, 42)
			if got := testutil.ToFloat64(m.CheckpointEvents); got != 42 {
				t.Errorf("%s: checkpoint events %v, want 42", tt.name, got)
			}
		}
		if got := m.CheckpointAge(); got != tt.want {
			t.Errorf("%s: CheckpointAge() = %v, want %v", tt.name, got, tt.want)
		}
		mf := gathered(t, m)["tributary_checkpoint_age_seconds"]
		if got := mf.GetMetric()[0].GetGauge().GetValue(); math.Abs(got-tt.want.Seconds()) > 1e-9 {
			t.Errorf("%s: tributary_checkpoint_age_seconds = %v, want %v", tt.name, got, tt.want.Seconds())
		}
	}
}

// TestGrafanaDashboard checks that docs/grafana/tributary.json is valid JSON
// and that every metric its queries use is exported.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "docs", "grafana", "tributary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		SchemaVersion int `json:"schemaVersion"`
		Inputs        []struct {
			Name, Type, PluginID string
		} `json:"__inputs"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("parse dashboard: %v", err)
	}
	if dash.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want ≥ 36", dash.SchemaVersion)
	}
	if len(dash.Inputs) != 1 || dash.Inputs[0].Name != "DS_PROMETHEUS" || dash.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one prometheus datasource DS_PROMETHEUS", dash.Inputs)
	}
	fams := gathered(t, New("v", "c"))
	known := map[string]bool{}
	for name, mf := range fams {
		known[name] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				known[name+suffix] = true
			}
		}
	}
	ident := regexp.MustCompile(`\b(?:tributary|go|process)_[a-z0-9_]+\b`)
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				continue
			}
			queries++
			for _, name := range ident.FindAllString(tg.Expr, -1) {
				if !known[name] {
					t.Errorf("panel %q: query %q uses %s, which the registry does not export", p.Title, tg.Expr, name)
				}
			}
		}
	}
	if queries < 8 {
		t.Errorf("dashboard has %d queries, want at least 8", queries)
	}
}

// TestDocsUseExportedMetrics checks that every tributary metric the
// documentation mentions (alerts, runbooks, deployment notes) exists.
func TestDocsUseExportedMetrics(t *testing.T) {
	fams := gathered(t, New("v", "c"))
	known := map[string]bool{}
	for name, mf := range fams {
		known[name] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				known[name+suffix] = true
			}
		}
	}
	ident := regexp.MustCompile(`\btributary_[a-z0-9_]+\b`)
	for _, doc := range []string{"metrics.md", "operations.md", "deploy.md"} {
		raw, err := os.ReadFile(filepath.Join("..", "docs", doc))
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, name := range ident.FindAllString(string(raw), -1) {
			if name == "tributary_" || strings.HasSuffix(name, "_") {
				continue
			}
			found++
			if !known[name] {
				t.Errorf("docs/%s mentions %s, which the registry does not export", doc, name)
			}
		}
		if found == 0 {
			t.Errorf("docs/%s mentions no metric", doc)
		}
	}
}

func TestObserveInsert(t *testing.T) {
	m := New("v", "c")
	m.ObserveInsert("events", 500, 1500*time.Millisecond)
	m.ObserveInsert("events", 10, 500*time.Millisecond)
	var d dto.Metric
	if err := m.SinkInsertDuration.WithLabelValues("events").(interface{ Write(*dto.Metric) error }).Write(&d); err != nil {
		t.Fatal(err)
	}
	if got, want := d.GetHistogram().GetSampleCount(), uint64(2); got != want {
		t.Errorf("insert duration count = %d, want %d", got, want)
	}
	if got, want := d.GetHistogram().GetSampleSum(), 2.0; got != want {
		t.Errorf("insert duration sum = %v, want %v", got, want)
	}
}
