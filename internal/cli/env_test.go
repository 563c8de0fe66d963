package cli

import (
	"testing"

	"github.com/spf13/pflag"
)

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"clickhouse.addr":    "TRIBUTARY_CLICKHOUSE_ADDR",
		"web.listen-address": "TRIBUTARY_WEB_LISTEN_ADDRESS",
		"api.poll-interval":  "TRIBUTARY_API_POLL_INTERVAL",
		"checkpoint.file":    "TRIBUTARY_CHECKPOINT_FILE",
	} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestApplyEnvFlagWins(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	a := fs.String("api.url", "default", "")
	b := fs.Int("api.page-size", 100, "")
	c := fs.String("clickhouse.addr", "def", "")
	if err := fs.Parse([]string{"--api.url=flag"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TRIBUTARY_API_URL": "env", "TRIBUTARY_API_PAGE_SIZE": "500"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := ApplyEnv(fs, lookup); err != nil {
		t.Fatal(err)
	}
	if *a != "flag" || *b != 500 || *c != "def" {
		t.Errorf("got %q %d %q, want flag 500 def", *a, *b, *c)
	}
	env["TRIBUTARY_CLICKHOUSE_ADDR"] = "x"
	env["TRIBUTARY_API_PAGE_SIZE"] = "lots"
	fs2 := pflag.NewFlagSet("y", pflag.ContinueOnError)
	fs2.Int("api.page-size", 100, "")
	if err := ApplyEnv(fs2, lookup); err == nil {
		t.Error("ApplyEnv accepted TRIBUTARY_API_PAGE_SIZE=lots")
	}
}
