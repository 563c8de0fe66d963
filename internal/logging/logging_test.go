package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestFlagsAndValidate(t *testing.T) {
	tests := []struct {
		args    []string
		want    Config
		wantErr []string
	}{
		{nil, Config{Format: "json", Level: "info"}, nil},
		{[]string{"--log.format=text", "--log.level=DEBUG"}, Config{Format: "text", Level: "DEBUG"}, nil},
		{[]string{"--log.format=xml", "--log.level=loud"}, Config{Format: "xml", Level: "loud"},
			[]string{`--log.format "xml"`, `--log.level "loud"`}},
	}
	for _, tt := range tests {
		var c Config
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if c != tt.want {
			t.Errorf("%q: config %+v, want %+v", tt.args, c, tt.want)
		}
		err := c.Validate()
		if len(tt.wantErr) == 0 && err != nil {
			t.Errorf("%q: Validate() = %v, want nil", tt.args, err)
		}
		if len(tt.wantErr) > 0 && err == nil {
			t.Errorf("%q: Validate() = nil, want %q", tt.args, tt.wantErr)
		}
		for _, w := range tt.wantErr {
			if err != nil && !strings.Contains(err.Error(), w) {
				t.Errorf("%q: Validate() = %v, want it to contain %q", tt.args, err, w)
			}
		}
		if _, nerr := New(c, &bytes.Buffer{}); (nerr != nil) != (len(tt.wantErr) > 0) {
			t.Errorf("%q: New error %v, want error %v", tt.args, nerr, len(tt.wantErr) > 0)
		}
	}
}

func TestFormatAndLevel(t *testing.T) {
	tests := []struct {
		cfg       Config
		wantLines int
		wantStart string
	}{
		{Config{Format: "json", Level: "info"}, 2, `{"time":`},
		{Config{Format: "text", Level: "warn"}, 1, `time=`},
		{Config{Format: "json", Level: "debug"}, 3, `{"time":`},
		{Config{Format: "text", Level: "error"}, 0, ``},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		log, err := New(tt.cfg, &buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Debug("batch written", "events", 10)
		log.Info("started")
		log.Warn("retrying", "reason", "timeout")
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if buf.Len() == 0 {
			lines = nil
		}
		if len(lines) != tt.wantLines {
			t.Errorf("%+v: %d lines, want %d:\n%s", tt.cfg, len(lines), tt.wantLines, buf.String())
		}
		for _, l := range lines {
			if !strings.HasPrefix(l, tt.wantStart) {
				t.Errorf("%+v: line %q does not start with %q", tt.cfg, l, tt.wantStart)
			}
			if tt.cfg.Format == "json" && !json.Valid([]byte(l)) {
				t.Errorf("%+v: line %q is not JSON", tt.cfg, l)
			}
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	type conf struct {
		User     string
		Password Secret
	}
	s := Secret("hunter2")
	c := conf{User: "u", Password: s}
	var buf bytes.Buffer
	log, err := New(Config{Format: "json", Level: "info"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("config", "pw", s, "conf", c)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"slog":  buf.String(),
		"%s":    fmt.Sprintf("%s", s),
		"%v":    fmt.Sprintf("%v", c),
		"%+v":   fmt.Sprintf("%+v", c),
		"%#v":   fmt.Sprintf("%#v", c),
		"json":  string(js),
		"print": fmt.Sprint(s),
	}
	for name, out := range outputs {
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s output %q shows the secret", name, out)
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("%s output %q lacks %s", name, out, Redacted)
		}
	}
	if got := s.Reveal(); got != "hunter2" {
		t.Errorf("Reveal() = %q, want hunter2", got)
	}
	if got := fmt.Sprint(Secret("")); got != "" {
		t.Errorf("empty secret prints %q, want empty", got)
	}
}

func TestRedactAttributes(t *testing.T) {
	tests := []struct {
		key, value string
		want       string
	}{
		{"password", "hunter2", Redacted},
		{"clickhouse.password", "hunter2", Redacted},
		{"api_token", "tok", Redacted},
		{"Authorization", "Bearer abc", Redacted},
		{"password", "", ""},
		{"pg.dsn", "postgres://rep:hunter2@db:5432/app?sslmode=disable", "postgres://rep:" + Redacted + "@db:5432/app?sslmode=disable"},
		{"api.url", "https://api.example.com/events?token=abc&page=2", "https://api.example.com/events?page=2&token=" + Redacted},
		{"dsn", "host=db user=rep password='hun ter2' dbname=app", "host=db user=rep password=" + Redacted + " dbname=app"},
		{"dsn", "host=db password=hunter2", "host=db password=" + Redacted},
		{"clickhouse.addr", "127.0.0.1:9000", "127.0.0.1:9000"},
		{"addr", "clickhouse:9000", "clickhouse:9000"},
		{"table", "events", "events"},
		{"api.token-file", "/run/secrets/token", "/run/secrets/token"},
		{"msg2", `dial "postgres://rep:hunter2@db/app": refused`, `dial "postgres://rep:` + Redacted + `@db/app": refused`},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		log, err := New(Config{Format: "json", Level: "info"}, &buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("x", slog.Group("g", tt.key, tt.value))
		var rec struct {
			G map[string]string `json:"g"`
		}
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatalf("%s: %v in %s", tt.key, err, buf.String())
		}
		if got := rec.G[tt.key]; got != tt.want {
			t.Errorf("%s=%q logged as %q, want %q", tt.key, tt.value, got, tt.want)
		}
	}
}

func TestRedactErrors(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("connect to postgres://rep:hunter2@db:5432/app: refused"), "connect to postgres://rep:" + Redacted + "@db:5432/app: refused"},
		{fmt.Errorf("connect (host=db password=hunter2): refused"), "connect (host=db password=" + Redacted + " refused"}, // over-redacts to the next space,
		{fmt.Errorf("plain failure"), "plain failure"},
	}
	for _, tt := range tests {
		if got := RedactText(tt.err.Error()); got != tt.want {
			t.Errorf("RedactText(%q) = %q, want %q", tt.err, got, tt.want)
		}
		var buf bytes.Buffer
		log, err := New(Config{Format: "json", Level: "info"}, &buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Error("failed", "err", tt.err)
		var rec struct{ Err string }
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Err != tt.want {
			t.Errorf("logged error %q, want %q", rec.Err, tt.want)
		}
	}
}

func TestFlags(t *testing.T) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.String("api.token", "", "")
	fs.String("api.token-file", "", "")
	fs.String("clickhouse.password", "", "")
	fs.String("pg.dsn", "", "")
	fs.String("api.url", "", "")
	fs.Int("pipeline.batch-events", 10000, "")
	fs.String("log.level", "info", "")
	if err := fs.Parse([]string{"--api.token=tok123", "--api.token-file=/run/secrets/t", "--clickhouse.password=hunter2",
		"--pg.dsn=postgres://rep:hunter2@db/app", "--api.url=https://api.example.com", "--pipeline.batch-events=500"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log, err := New(Config{Format: "json", Level: "info"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("starting", slog.Group("config", Flags(fs)...))
	var rec struct{ Config map[string]string }
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"api.token":             Redacted,
		"api.token-file":        "/run/secrets/t",
		"clickhouse.password":   Redacted,
		"pg.dsn":                "postgres://rep:" + Redacted + "@db/app",
		"api.url":               "https://api.example.com",
		"pipeline.batch-events": "500",
	}
	if len(rec.Config) != len(want) {
		t.Errorf("logged %d flags %v, want the %d set ones", len(rec.Config), rec.Config, len(want))
	}
	for k, w := range want {
		if got := rec.Config[k]; got != w {
			t.Errorf("%s logged as %q, want %q", k, got, w)
		}
	}
	if strings.Contains(buf.String(), "hunter2") || strings.Contains(buf.String(), "tok123") {
		t.Errorf("a secret reached the log: %s", buf.String())
	}
}

// TestDurationsAsText: a duration reads "8s" in both formats, not the
// nanoseconds JSON would print.
func TestDurationsAsText(t *testing.T) {
	for _, format := range []string{FormatJSON, FormatText} {
		var buf bytes.Buffer
		log, err := New(Config{Format: format, Level: "info"}, &buf)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("shutting down", "timeout", 8*time.Second, "took", 1500*time.Millisecond)
		out := buf.String()
		for _, want := range []string{"timeout", "8s", "1.5s"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: %q lacks %q", format, out, want)
			}
		}
		if strings.Contains(out, "8000000000") {
			t.Errorf("%s: %q prints nanoseconds", format, out)
		}
	}
}
