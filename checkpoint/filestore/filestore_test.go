package filestore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
)

func TestSaveLoadReset(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "checkpoints.json")
	s := New(path)
	if _, found, err := s.Load(ctx, "a"); err != nil || found {
		t.Fatalf("Load before any Save = found %v, %v; want none", found, err)
	}
	at := time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)
	saves := []checkpoint.Checkpoint{
		{Pipeline: "a", Position: "tok-1", Events: 10, SavedAt: at},
		{Pipeline: "b", Position: "0/16B3748", Events: 5, SavedAt: at},
		{Pipeline: "a", Position: "tok-2", Events: 25, SavedAt: at.Add(time.Second)},
		{Pipeline: "a", Position: "tok-3", Events: 40, SavedAt: at.Add(2 * time.Second)},
	}
	for _, cp := range saves {
		if err := s.Save(ctx, checkpoint.Lease{}, cp); err != nil {
			t.Fatalf("Save(%v): %v", cp, err)
		}
	}
	// A new Store on the same file (a restart) sees the latest saves.
	s2 := New(path)
	tests := []struct {
		pipeline  string
		want      checkpoint.Checkpoint
		wantFound bool
	}{
		{"a", saves[3], true},
		{"b", saves[1], true},
		{"c", checkpoint.Checkpoint{}, false},
	}
	for _, tt := range tests {
		got, found, err := s2.Load(ctx, tt.pipeline)
		if err != nil || found != tt.wantFound || got != tt.want {
			t.Errorf("Load(%s) = %+v, %v, %v; want %+v, %v", tt.pipeline, got, found, err, tt.want, tt.wantFound)
		}
	}
	if err := s2.Reset(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, found, err := New(path).Load(ctx, "a"); err != nil || found {
		t.Errorf("Load(a) after Reset = found %v, %v; want none", found, err)
	}
	if got, found, _ := New(path).Load(ctx, "b"); !found || got != saves[1] {
		t.Errorf("Load(b) after Reset(a) = %+v, %v; want %+v", got, found, saves[1])
	}
	if err := s2.Reset(ctx, "never-saved"); err != nil {
		t.Errorf("Reset of an unknown pipeline = %v, want nil", err)
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	ctx := context.Background()
	tests := []struct{ name, content, want string }{
		{"truncated", `{"version":1,"pipelines":{"a":{"posi`, "corrupt"},
		{"not json", "hello", "corrupt"},
		{"future version", `{"version":9,"pipelines":{}}`, "format version 9"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "cp.json")
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		s := New(path)
		if _, _, err := s.Load(ctx, "a"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Load = %v, want an error containing %q", tt.name, err, tt.want)
		}
		if err := s.Save(ctx, checkpoint.Lease{}, checkpoint.Checkpoint{Pipeline: "a", Position: "p"}); err == nil {
			t.Errorf("%s: Save over a corrupt file succeeded, want an error (never reset silently)", tt.name)
		}
		b, _ := os.ReadFile(path)
		if string(b) != tt.content {
			t.Errorf("%s: the corrupt file was changed to %q", tt.name, b)
		}
	}
}

func TestLeftoverTempFileIsIgnored(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	s := New(path)
	want := checkpoint.Checkpoint{Pipeline: "a", Position: "p1", Events: 3, SavedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := s.Save(ctx, checkpoint.Lease{}, want); err != nil {
		t.Fatal(err)
	}
	// A crash between writing the temporary file and renaming it leaves a
	// torn temporary file beside the real one.
	if err := os.WriteFile(filepath.Join(dir, ".cp.json.tmp-123"), []byte(`{"version":1,"pipel`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, found, err := New(path).Load(ctx, "a")
	if err != nil || !found || got != want {
		t.Errorf("Load with a leftover temporary file = %+v, %v, %v; want %+v", got, found, err, want)
	}
	if err := s.Save(ctx, checkpoint.Lease{}, checkpoint.Checkpoint{Pipeline: "a", Position: "p2", Events: 4, SavedAt: want.SavedAt}); err != nil {
		t.Errorf("Save with a leftover temporary file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, ","), ".cp.json.tmp-123,cp.json"; got != want {
		t.Errorf("folder holds %s, want %s (no new temporary file left)", got, want)
	}
}

func TestSaveFailsWhenFolderIsMissing(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "missing", "cp.json"))
	if err := s.Save(context.Background(), checkpoint.Lease{}, checkpoint.Checkpoint{Pipeline: "a"}); err == nil {
		t.Error("Save into a missing folder succeeded, want an error")
	}
}
