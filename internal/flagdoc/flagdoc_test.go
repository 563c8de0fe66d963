package flagdoc

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func sample() *pflag.FlagSet {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.String("log.level", "info", "lowest level logged")
	fs.String("clickhouse.addr", "127.0.0.1:9000", "native `host:port` of ClickHouse")
	fs.String("clickhouse.password", "", "password | secret")
	fs.Duration("web.ready-max-checkpoint-age", 5*time.Minute, "max age")
	fs.Bool("dry-run", false, "do nothing")
	fs.Int("zeta.knob", 3, "an unknown component")
	fs.String("api.url", "", "base URL")
	fs.String("api.debug-dump", "", "hidden")
	if err := fs.MarkHidden("api.debug-dump"); err != nil {
		panic(err)
	}
	return fs
}

func TestComponent(t *testing.T) {
	tests := []struct{ flag, want string }{
		{"clickhouse.addr", "clickhouse"},
		{"web.listen-address", "web"},
		{"dry-run", General},
		{".odd", General},
	}
	for _, tt := range tests {
		if got := Component(tt.flag); got != tt.want {
			t.Errorf("Component(%q) = %q, want %q", tt.flag, got, tt.want)
		}
	}
}

func TestByComponent(t *testing.T) {
	var got []string
	for _, g := range ByComponent(sample()) {
		var names []string
		g.Flags.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
		got = append(got, g.Title+": "+strings.Join(names, ","))
	}
	want := []string{
		"General: dry-run",
		"Event-stream API source: api.url",
		"ClickHouse sink: clickhouse.addr,clickhouse.password",
		"Web server: metrics and health: web.ready-max-checkpoint-age",
		"Logging: log.level",
		"zeta: zeta.knob",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ByComponent:\n got %q\nwant %q", got, want)
	}
	if ByComponent(nil) != nil {
		t.Error("ByComponent(nil) is not empty")
	}
}

func TestGroupedUsage(t *testing.T) {
	var buf bytes.Buffer
	fs := sample()
	GroupedUsage(&buf, ByComponent(fs))
	out := buf.String()
	want := []string{
		"ClickHouse sink:\n      --clickhouse.addr host:port",
		`native host:port of ClickHouse [$TRIBUTARY_CLICKHOUSE_ADDR] (default "127.0.0.1:9000")`,
		"[$TRIBUTARY_WEB_READY_MAX_CHECKPOINT_AGE]",
		"(default 5m0s)",
		"Logging:\n      --log.level string",
		"General:\n      --dry-run",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("GroupedUsage lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "debug-dump") {
		t.Errorf("GroupedUsage shows a hidden flag:\n%s", out)
	}
	// The original flags keep their usage text.
	if u := fs.Lookup("log.level").Usage; u != "lowest level logged" {
		t.Errorf("GroupedUsage changed a flag's usage to %q", u)
	}
}

func TestMarkdown(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("clickhouse.addr", "127.0.0.1:9000", "native `host:port` of ClickHouse")
	fs.String("clickhouse.password", "", "password | secret")
	fs.StringSlice("clickhouse.settings", nil, "extra settings")
	fs.Duration("web.ready-max-checkpoint-age", 5*time.Minute, "max age")
	got := Markdown(ByComponent(fs))
	want := "### ClickHouse sink\n\n" +
		"| Flag | Environment | Type | Default | Description |\n| --- | --- | --- | --- | --- |\n" +
		"| `--clickhouse.addr` | `TRIBUTARY_CLICKHOUSE_ADDR` | host:port | `127.0.0.1:9000` | native host:port of ClickHouse |\n" +
		"| `--clickhouse.password` | `TRIBUTARY_CLICKHOUSE_PASSWORD` | string | *(empty)* | password \\| secret |\n" +
		"| `--clickhouse.settings` | `TRIBUTARY_CLICKHOUSE_SETTINGS` | strings | *(empty)* | extra settings |\n" +
		"\n### Web server: metrics and health\n\n" +
		"| Flag | Environment | Type | Default | Description |\n| --- | --- | --- | --- | --- |\n" +
		"| `--web.ready-max-checkpoint-age` | `TRIBUTARY_WEB_READY_MAX_CHECKPOINT_AGE` | duration | `5m0s` | max age |\n"
	if got != want {
		t.Errorf("Markdown:\n got:\n%s\nwant:\n%s", got, want)
	}
}

func TestDocument(t *testing.T) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.String("api.url", "", "base URL")
	got := Document([]Command{
		{Name: "version", Summary: "print the version"},
		{Name: "run", Summary: "replicate events into ClickHouse", Flags: fs},
	})
	want := []string{
		"# Configuration\n",
		"Commands: [`run`](#tributary-run) [`version`](#tributary-version)\n",
		"## tributary run\n\nReplicate events into ClickHouse.\n\n### Event-stream API source\n",
		"| `--api.url` | `TRIBUTARY_API_URL` | string | *(empty)* | base URL |\n",
		"## tributary version\n\nPrint the version.\n\nNo flags.\n",
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("Document lacks %q:\n%s", w, got)
		}
	}
	if i, j := strings.Index(got, "## tributary run"), strings.Index(got, "## tributary version"); i > j {
		t.Errorf("commands not sorted:\n%s", got)
	}
}

func TestCommandUsage(t *testing.T) {
	tests := []struct {
		cmd  Command
		want []string
		not  []string
	}{
		{Command{Name: "run", Summary: "replicate events", Flags: sample()},
			[]string{"Usage: tributary run [FLAGS]\n\nReplicate events.\n\nGeneral:\n", "ClickHouse sink:\n", "[$TRIBUTARY_LOG_LEVEL]", "environment twin"}, nil},
		{Command{Name: "version", Summary: "print the version"},
			[]string{"Usage: tributary version [FLAGS]\n\nPrint the version.\n"}, []string{"environment twin"}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		CommandUsage(&buf, tt.cmd)
		for _, w := range tt.want {
			if !strings.Contains(buf.String(), w) {
				t.Errorf("CommandUsage(%s) lacks %q:\n%s", tt.cmd.Name, w, buf.String())
			}
		}
		for _, w := range tt.not {
			if strings.Contains(buf.String(), w) {
				t.Errorf("CommandUsage(%s) shows %q:\n%s", tt.cmd.Name, w, buf.String())
			}
		}
	}
}

func TestTitleAnnotation(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("pg.dsn", "", "where the copy goes")
	fs.String("api.url", "", "the API")
	if err := fs.SetAnnotation("pg.dsn", TitleAnnotation, []string{"PostgreSQL copy"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, g := range ByComponent(fs) {
		got[g.Name] = g.Title
	}
	if got["pg"] != "PostgreSQL copy" || got["api"] != Title("api") {
		t.Errorf("titles %v, want pg → PostgreSQL copy and api → %s", got, Title("api"))
	}
}
