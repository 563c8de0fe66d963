package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

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

// saveCheckpoints acquires each checkpoint's pipeline in store and saves
// it, returning the leases (the running pipelines).
func saveCheckpoints(t *testing.T, ctx context.Context, store checkpoint.Store, cps ...checkpoint.Checkpoint) []checkpoint.Lease {
	t.Helper()
	var leases []checkpoint.Lease
	for _, cp := range cps {
		lease, _, _, err := store.Acquire(ctx, cp.Pipeline)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Save(ctx, lease, cp); err != nil {
			t.Fatal(err)
		}
		leases = append(leases, lease)
	}
	return leases
}

func TestCheckpointCommandFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.json")
	saved := time.Date(2026, 11, 22, 21, 30, 0, 250e6, time.UTC)
	s := filestore.New(path)
	leases := saveCheckpoints(t, ctx, s,
		checkpoint.Checkpoint{Pipeline: "main", Position: "tok-42", Events: 1234, SavedAt: saved},
		checkpoint.Checkpoint{Pipeline: "other", Position: "tok-7", Events: 7, SavedAt: saved},
		checkpoint.Checkpoint{Pipeline: "default", Position: "tok-1", Events: 1, SavedAt: saved},
	)
	f := "--checkpoint.file=" + path
	runCmdCases(t, []cmdCase{
		{"show", []string{"checkpoint", "show", "--pipeline", "main", f}, 0,
			[]string{"paging token tok-42", "events written:   1234", "last checkpoint:  2026-11-22T21:30:00.25Z (", "store:            file " + path + " (generation 1)",
				"backfill windows: none"}},
		{"show by the run command's flag", []string{"checkpoint", "--pipeline.name=other", "show", f}, 0, []string{"paging token tok-7"}},
		{"show the default pipeline", []string{"checkpoint", "show", f}, 0, []string{"pipeline:         default", "paging token tok-1"}},
		{"show an unknown pipeline", []string{"checkpoint", "show", "--pipeline", "mian", f}, 1,
			[]string{`pipeline "mian" has no checkpoint in file ` + path + "; pipelines there: default, main, other"}},
		{"reset without --yes off a terminal", []string{"checkpoint", "reset", "--pipeline", "main", f}, 2, []string{"standard input is not a terminal: add --yes"}},
		{"reset", []string{"checkpoint", "reset", "--yes", "--pipeline", "main", f}, 0, []string{
			"reset the checkpoint of pipeline main in file " + path + ": removed position tok-42, 1234 events, saved at 2026-11-22T21:30:00.25Z (generation 1); now generation 2, without a checkpoint",
			"a pipeline still running stops at its next checkpoint; it was last saved ",
			"the next start begins from the configured start"}},
		{"show after reset", []string{"checkpoint", "show", "--pipeline", "main", f}, 0,
			[]string{"position:         none: the next start begins from the configured start (reset, or started and not saved yet; generation 2)"}},
		{"reset again still fences", []string{"checkpoint", "reset", "--yes", "--pipeline", "main", f}, 0,
			[]string{"reset pipeline main in file " + path + ", which had no checkpoint (reset, or started and not saved yet; generation 2); now generation 3", "stops at its next checkpoint"}},
		{"reset of an unknown pipeline", []string{"checkpoint", "reset", "--yes", "--pipeline", "nope", f}, 1,
			[]string{`pipeline "nope" has no checkpoint in file ` + path + "; pipelines there: default, main, other"}},
		{"other pipeline kept", []string{"checkpoint", "show", "--pipeline", "other", f}, 0, []string{"paging token tok-7"}},
		{"status: every pipeline", []string{"status", f}, 0, []string{"pipeline:         default", "paging token tok-1",
			"pipeline:         main", "position:         none", "pipeline:         other", "paging token tok-7"}},
		{"status: one pipeline", []string{"status", "--pipeline", "other", f}, 0, []string{"pipeline:         other"}},
		{"status: an unknown pipeline", []string{"status", "--pipeline", "nope", f}, 1, []string{"pipelines there: default, main, other"}},
	})
	// The pipeline that was running when its checkpoint was reset stops at its next save.
	err := s.Save(ctx, leases[0], checkpoint.Checkpoint{Pipeline: "main", Position: "tok-43", Events: 1235})
	if !errors.Is(err, checkpoint.ErrFenced) {
		t.Errorf("Save of the running pipeline after reset = %v, want ErrFenced", err)
	}
	if err := s.Save(ctx, leases[1], checkpoint.Checkpoint{Pipeline: "other", Position: "tok-8", Events: 8}); err != nil {
		t.Errorf("Save of another pipeline after reset: %v", err)
	}
	t.Setenv("TRIBUTARY_PIPELINE_NAME", "other")
	runCmdCases(t, []cmdCase{
		{"pipeline from the environment", []string{"checkpoint", "show", f}, 0, []string{"paging token tok-8"}},
		{"a set flag wins over the environment", []string{"checkpoint", "show", "--pipeline=default", f}, 0, []string{"paging token tok-1"}},
	})
	t.Setenv("TRIBUTARY_PIPELINE_NAME", "")
	t.Setenv("TRIBUTARY_CHECKPOINT_FILE", path)
	runCmdCases(t, []cmdCase{
		{"file from the environment", []string{"checkpoint", "show", "--pipeline=other"}, 0, []string{"paging token tok-8", "file " + path}},
	})
}

// TestCheckpointResetConfirmation: on a terminal, reset asks, and resets
// only after yes.
func TestCheckpointResetConfirmation(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.json")
	saveCheckpoints(t, ctx, filestore.New(path), checkpoint.Checkpoint{Pipeline: "default", Position: "tok-1", Events: 10, SavedAt: time.Now()})
	defer func(in io.Reader, term func() bool) { stdin, stdinIsTerminal = in, term }(stdin, stdinIsTerminal)
	stdinIsTerminal = func() bool { return true }
	f := "--checkpoint.file=" + path
	stdin = strings.NewReader("no\n")
	runCmdCases(t, []cmdCase{{"answered no", []string{"checkpoint", "reset", f}, 1,
		[]string{"Reset pipeline default in file " + path + " (at paging token tok-1, 10 events, saved ", "Type yes to reset:", "not reset"}}})
	if _, found, _ := filestore.New(path).Load(ctx, "default"); !found {
		t.Error("the checkpoint was reset after no")
	}
	stdin = strings.NewReader("yes\n")
	runCmdCases(t, []cmdCase{{"answered yes", []string{"checkpoint", "reset", f}, 0, []string{"Type yes to reset:", "reset the checkpoint of pipeline default"}}})
	if _, found, _ := filestore.New(path).Load(ctx, "default"); found {
		t.Error("the checkpoint is still there after yes")
	}
}

func TestCheckpointCommandUsage(t *testing.T) {
	bad := corruptFile(t)
	runCmdCases(t, []cmdCase{
		{"no action", []string{"checkpoint", "--pipeline=a", "--checkpoint.file=/tmp/x.json"}, 2, []string{"show or reset", "Usage:"}},
		{"unknown action", []string{"checkpoint", "drop", "--pipeline=a", "--checkpoint.file=/tmp/x.json"}, 2, []string{`"drop"`}},
		{"empty pipeline", []string{"checkpoint", "show", "--pipeline=", "--checkpoint.file=/tmp/x.json"}, 2, []string{"--pipeline must not be empty"}},
		{"bad ClickHouse flags", []string{"checkpoint", "show", "--pipeline=a", "--clickhouse.addr=nohost", "--clickhouse.database=x-y"}, 2,
			[]string{"--clickhouse.addr", "--clickhouse.database"}},
		{"disagreeing names", []string{"checkpoint", "show", "--pipeline=a", "--pipeline.name=b", "--checkpoint.file=/tmp/x.json"}, 2, []string{"disagree"}},
		{"unknown flag", []string{"checkpoint", "show", "--nope"}, 2, []string{"unknown flag"}},
		{"resnapshot with show", []string{"checkpoint", "show", "--resnapshot", "--pg.dsn=postgres://u@h/db", "--checkpoint.file=/tmp/x.json"}, 2, []string{"--resnapshot goes with reset"}},
		{"resnapshot without a DSN", []string{"checkpoint", "reset", "--resnapshot", "--checkpoint.file=/tmp/x.json"}, 2, []string{"--pg.dsn is required"}},
		{"help", []string{"checkpoint", "--help"}, 0, []string{"show|reset", "--clickhouse.password", "TRIBUTARY_CLICKHOUSE_PASSWORD", "--resnapshot", "--pg.slot", "TRIBUTARY_PG_DSN"}},
		{"show a corrupt file", []string{"checkpoint", "show", "--pipeline=a", "--checkpoint.file=" + bad}, 1, []string{"is corrupt", "move it away"}},
		{"reset a corrupt file", []string{"checkpoint", "reset", "--yes", "--pipeline=a", "--checkpoint.file=" + bad}, 1, []string{"is corrupt", "move it away"}},
		{"a missing file", []string{"checkpoint", "show", "--checkpoint.file=/nonexistent/cp.json"}, 1, []string{"checkpoint file /nonexistent/cp.json does not exist"}},
		{"--yes with show", []string{"checkpoint", "show", "--yes", "--checkpoint.file=/tmp/x.json"}, 2, []string{"--yes goes with reset"}},
	})
}

func corruptFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(p, []byte("{not json"), 0o600); err != nil {
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
	leases := saveCheckpoints(t, ctx, store, checkpoint.Checkpoint{Pipeline: "pg", Position: "0/16B3748", Events: 99, SavedAt: saved})
	conn := ch.Flags()
	with := func(args ...string) []string { return append(args, conn...) }
	table := "table " + ch.Database + "._tributary_checkpoints"
	runCmdCases(t, []cmdCase{
		{"show", with("checkpoint", "show", "--pipeline=pg"), 0,
			[]string{"LSN 0/16B3748", "events written:   99", "last checkpoint:  2026-11-22T21:31:00.005Z (", "(generation 1)", table,
				"source:           unknown: no event written to " + ch.Database + ".events yet", "rejects:          0"}},
		{"show unknown", with("checkpoint", "show", "--pipeline=nope"), 1, []string{`pipeline "nope" has no checkpoint in ClickHouse`, "pipelines there: pg"}},
		{"unknown database", append(with("checkpoint", "show", "--pipeline=pg"), "--clickhouse.database=no_such_db"), 1,
			[]string{`has no database "no_such_db" (--clickhouse.database); databases with a checkpoint table: `, ch.Database}},
		{"database without the table", append(with("checkpoint", "show", "--pipeline=pg"), "--clickhouse.database=system"), 1,
			[]string{`database "system" on ClickHouse`, "has no checkpoint table _tributary_checkpoints: no pipeline has run there; databases with one: ", ch.Database}},
		{"reset", with("checkpoint", "reset", "--yes", "--pipeline=pg"), 0, []string{"reset the checkpoint of pipeline pg", "position 0/16B3748", "now generation 2", "stops at its next checkpoint"}},
		{"show after reset", with("checkpoint", "show", "--pipeline=pg"), 0, []string{"position:         none", "generation 2"}},
		{"unreachable server", []string{"checkpoint", "show", "--pipeline=pg", "--clickhouse.addr=127.0.0.1:1", "--clickhouse.dial-timeout=2s"}, 1, []string{"127.0.0.1:1"}},
	})
	if _, found, err := chstore.New(ch.Conn, ch.Database).Load(ctx, "pg"); err != nil || found {
		t.Errorf("Load after the reset command = found %v, %v; want none", found, err)
	}
	if err := store.Save(ctx, leases[0], checkpoint.Checkpoint{Pipeline: "pg", Position: "0/16B3800", Events: 100}); !errors.Is(err, checkpoint.ErrFenced) {
		t.Errorf("Save of the running pipeline after the reset command = %v, want ErrFenced", err)
	}

	// A row that cannot be read: show says how to repair it, reset replaces it.
	b, err := ch.Conn.PrepareBatch(ctx, "INSERT INTO "+ch.Database+"._tributary_checkpoints (pipeline, position, events, saved_at, saved_at_ms, seq, deleted, generation)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append("bad", "x", uint64(1), saved, uint16(0), uint64(7<<32|2), uint8(0), uint64(3)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	runCmdCases(t, []cmdCase{
		{"show a corrupt row", with("checkpoint", "show", "--pipeline=bad"), 1, []string{"cannot be read", "tributary checkpoint reset --pipeline bad"}},
		{"reset a corrupt row", with("checkpoint", "reset", "--yes", "--pipeline=bad"), 0, []string{"cannot be read", "resetting it", "now generation 8"}},
		{"show after resetting a corrupt row", with("checkpoint", "show", "--pipeline=bad"), 0, []string{"position:         none", "generation 8"}},
	})
}

// TestCheckpointCommandResnapshot: reset --resnapshot resets the checkpoint,
// ends the walsender holding the slot and drops the slot.
func TestCheckpointCommandResnapshot(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	pg := testenv.Postgres(t)
	slot := testenv.Name("slot_")
	if _, err := pg.Conn.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
		t.Fatal(err)
	}
	pub := testenv.Name("pub_")
	if _, err := pg.Conn.Exec(ctx, "CREATE PUBLICATION "+pub+" FOR ALL TABLES"); err != nil {
		t.Fatal(err)
	}
	// A running pipeline: a replication connection streams from the slot.
	repl, err := pgconn.Connect(ctx, testenv.ReplicationDSN(pg.DSN))
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	if err := pglogrepl.StartReplication(ctx, repl, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pub + "'"},
	}); err != nil {
		t.Fatal(err)
	}
	var active bool
	if err := pg.Conn.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active); err != nil || !active {
		t.Fatalf("slot %s active = %v, %v; want an active slot", slot, active, err)
	}

	path := filepath.Join(t.TempDir(), "cp.json")
	store := filestore.New(path)
	leases := saveCheckpoints(t, ctx, store, checkpoint.Checkpoint{Pipeline: "pg", Position: "0/16B3748", Events: 5})
	args := []string{"checkpoint", "reset", "--yes", "--resnapshot", "--pipeline=pg", "--checkpoint.file=" + path, "--pg.dsn=" + pg.DSN, "--pg.slot=" + slot}
	runCmdCases(t, []cmdCase{
		{"reset --resnapshot", args, 0, []string{
			"reset the checkpoint of pipeline pg", "removed position 0/16B3748",
			"postgres: ended the walsender (pid ", `postgres: dropped replication slot "` + slot + `"`,
			`the next start creates slot "` + slot + `" again and copies table socotra_events (--pg.snapshot)`}},
		{"again: nothing left", append(args, "--pg.snapshot=false"), 0, []string{
			"which had no checkpoint", `postgres: replication slot "` + slot + `" does not exist`, "--pg.snapshot is false"}},
	})
	var n int
	if err := pg.Conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n); err != nil || n != 0 {
		t.Errorf("slots named %s after reset --resnapshot: %d, %v; want none", slot, n, err)
	}
	if err := store.Save(ctx, leases[0], checkpoint.Checkpoint{Pipeline: "pg", Position: "0/16B3800", Events: 6}); !errors.Is(err, checkpoint.ErrFenced) {
		t.Errorf("Save of the running pipeline after reset --resnapshot = %v, want ErrFenced", err)
	}
}

// Tests run without a terminal, wherever go test is started.
func init() { stdinIsTerminal = func() bool { return false } }
