package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/checkpoint/chstore"
	"github.com/tributary-cdc/tributary/checkpoint/filestore"
	"github.com/tributary-cdc/tributary/internal/testenv"
)

type cmdCase struct {
	name     string
	args     []string
	wantCode int
	wantOut  []string
}

func runCmdCases(t *testing.T, cases []cmdCase) {
	t.Helper()
	for _, tt := range cases {
		var out, errOut bytes.Buffer
		code := dispatch(tt.args, &out, &errOut)
		if code != tt.wantCode {
			t.Errorf("%s: exit code %d, want %d (stdout %q, stderr %q)", tt.name, code, tt.wantCode, out.String(), errOut.String())
		}
		got := out.String() + errOut.String()
		for _, w := range tt.wantOut {
			if !strings.Contains(got, w) {
				t.Errorf("%s: output %q lacks %q", tt.name, got, w)
			}
		}
	}
}

func TestCheckpointCommandFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cp.json")
	saved := time.Date(2026, 11, 22, 21, 30, 0, 250e6, time.UTC)
	s := filestore.New(path)
	for _, cp := range []checkpoint.Checkpoint{
		{Pipeline: "main", Position: "tok-42", Events: 1234, SavedAt: saved},
		{Pipeline: "other", Position: "tok-7", Events: 7, SavedAt: saved},
	} {
		lease, _, _, err := s.Acquire(context.Background(), cp.Pipeline)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Save(context.Background(), lease, cp); err != nil {
			t.Fatal(err)
		}
	}
	f := "--checkpoint.file=" + path
	runCmdCases(t, []cmdCase{
		{"show", []string{"checkpoint", "show", "--pipeline", "main", f}, 0,
			[]string{"position: tok-42", "events:   1234", "saved at: 2026-11-22T21:30:00.25Z", "file " + path}},
		{"show by the run command's flag", []string{"checkpoint", "--pipeline.name=other", "show", f}, 0, []string{"position: tok-7"}},
		{"reset", []string{"checkpoint", "reset", "--pipeline", "main", f}, 0, []string{"removed the checkpoint of pipeline main", "position tok-42", "1234 events"}},
		{"show after reset", []string{"checkpoint", "show", "--pipeline", "main", f}, 0, []string{"pipeline main has no checkpoint"}},
		{"reset again", []string{"checkpoint", "reset", "--pipeline", "main", f}, 0, []string{"nothing removed"}},
		{"other pipeline kept", []string{"checkpoint", "show", "--pipeline", "other", f}, 0, []string{"position: tok-7"}},
	})
	t.Setenv("TRIBUTARY_PIPELINE_NAME", "other")
	runCmdCases(t, []cmdCase{
		{"pipeline from the environment", []string{"checkpoint", "show", f}, 0, []string{"position: tok-7"}},
		{"a set flag wins over the environment", []string{"checkpoint", "show", "--pipeline=main", f}, 0, []string{"pipeline main has no checkpoint"}},
	})
}

func TestCheckpointCommandUsage(t *testing.T) {
	runCmdCases(t, []cmdCase{
		{"no action", []string{"checkpoint", "--pipeline=a", "--checkpoint.file=/tmp/x.json"}, 2, []string{"show or reset", "Usage:"}},
		{"unknown action", []string{"checkpoint", "drop", "--pipeline=a", "--checkpoint.file=/tmp/x.json"}, 2, []string{`"drop"`}},
		{"no pipeline", []string{"checkpoint", "show", "--checkpoint.file=/tmp/x.json"}, 2, []string{"--pipeline is required"}},
		{"bad ClickHouse flags", []string{"checkpoint", "show", "--pipeline=a", "--clickhouse.addr=nohost", "--clickhouse.database=x-y"}, 2,
			[]string{"--clickhouse.addr", "--clickhouse.database"}},
		{"disagreeing names", []string{"checkpoint", "show", "--pipeline=a", "--pipeline.name=b", "--checkpoint.file=/tmp/x.json"}, 2, []string{"disagree"}},
		{"unknown flag", []string{"checkpoint", "show", "--nope"}, 2, []string{"unknown flag"}},
		{"help", []string{"checkpoint", "--help"}, 0, []string{"show|reset", "--clickhouse.password", "TRIBUTARY_CLICKHOUSE_PASSWORD"}},
		{"corrupt file", []string{"checkpoint", "show", "--pipeline=a", "--checkpoint.file=" + corruptFile(t)}, 1, []string{"corrupt"}},
	})
}

func corruptFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "bad.json")
	if err := writeFile(p, "{not json"); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckpointCommandClickHouse(t *testing.T) {
	testenv.ForEachClickHouse(t, testCheckpointCommandClickHouse)
}

func testCheckpointCommandClickHouse(t *testing.T, ch *testenv.ClickHouseServer) {
	ctx := testenv.Context(t, time.Minute)
	saved := time.Date(2026, 11, 22, 21, 31, 0, 5e6, time.UTC)
	store := chstore.New(ch.Conn, ch.Database)
	lease, _, _, err := store.Acquire(ctx, "pg")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(ctx, lease, checkpoint.Checkpoint{Pipeline: "pg", Position: "0/16B3748", Events: 99, SavedAt: saved}); err != nil {
		t.Fatal(err)
	}
	conn := ch.Flags()
	with := func(args ...string) []string { return append(args, conn...) }
	runCmdCases(t, []cmdCase{
		{"show", with("checkpoint", "show", "--pipeline=pg"), 0,
			[]string{"position: 0/16B3748", "events:   99", "saved at: 2026-11-22T21:31:00.005Z", "table " + ch.Database + "._tributary_checkpoints"}},
		{"show unknown", with("checkpoint", "show", "--pipeline=nope"), 0, []string{"pipeline nope has no checkpoint"}},
		{"reset", with("checkpoint", "reset", "--pipeline=pg"), 0, []string{"removed the checkpoint of pipeline pg", "position 0/16B3748"}},
		{"show after reset", with("checkpoint", "show", "--pipeline=pg"), 0, []string{"pipeline pg has no checkpoint"}},
		{"unreachable server", []string{"checkpoint", "show", "--pipeline=pg", "--clickhouse.addr=127.0.0.1:1", "--clickhouse.dial-timeout=2s"}, 1, []string{"127.0.0.1:1"}},
	})
	if _, found, err := chstore.New(ch.Conn, ch.Database).Load(ctx, "pg"); err != nil || found {
		t.Errorf("Load after the reset command = found %v, %v; want none", found, err)
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
