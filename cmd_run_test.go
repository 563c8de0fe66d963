package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunInvalidConfigReportsEverythingWithCode2(t *testing.T) {
	var out, errOut bytes.Buffer
	code := dispatch([]string{"run", "--source", "api", "--api.flavor", "nope", "--api.page-size", "5000",
		"--pipeline.batch-events", "0", "--log.format", "xml", "--clickhouse.addr", ""}, &out, &errOut)
	if code != 2 {
		t.Fatalf("exit code %d, want 2; stderr:\n%s", code, errOut.String())
	}
	for _, want := range []string{"api.flavor", "api.page-size", "pipeline.batch-events", "log.format", "clickhouse.addr"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr does not name %s:\n%s", want, errOut.String())
		}
	}
}

func TestRunEnvironmentTwins(t *testing.T) {
	t.Setenv("TRIBUTARY_SOURCE", "carrier-pigeon")
	t.Setenv("TRIBUTARY_PIPELINE_BATCH_EVENTS", "-1")
	var out, errOut bytes.Buffer
	if code := dispatch([]string{"run"}, &out, &errOut); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	for _, want := range []string{`"carrier-pigeon"`, "pipeline.batch-events"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr does not mention %s from the environment:\n%s", want, errOut.String())
		}
	}
	// A flag set on the command line wins over its environment twin.
	errOut.Reset()
	dispatch([]string{"run", "--source", "postgres"}, &out, &errOut)
	if strings.Contains(errOut.String(), "carrier-pigeon") {
		t.Errorf("the environment won over --source:\n%s", errOut.String())
	}
}

func TestRunHelpGroupsFlagsByComponent(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := dispatch([]string{"run", "--help"}, &out, &errOut); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	text := out.String()
	prev := -1
	for _, flag := range []string{"--source", "--api.url", "--pg.dsn", "--clickhouse.addr"} {
		i := strings.Index(text, "      "+flag+" ") // a flag's line, not a mention in the prose
		if i < 0 {
			t.Fatalf("--help lacks %s", flag)
		}
		if i < prev {
			t.Errorf("%s is not grouped after the previous component", flag)
		}
		prev = i
	}
}
