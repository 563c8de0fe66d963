package filestore

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/checkpoint/storetest"
	"github.com/tributary-cdc/tributary/internal/fault"
)

// TestConformance plays the scenarios every store passes; each Store value
// on the file stands for a process of its own.
func TestConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "checkpoints.json")
	storetest.Run(t, context.Background(), func(*testing.T) checkpoint.Store { return New(path) })
}

func TestSaveLoadReset(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "checkpoints.json")
	s := New(path)
	if _, found, err := s.Load(ctx, "a"); err != nil || found {
		t.Fatalf("Load before any Save = found %v, %v; want none", found, err)
	}
	la, _, _, err := s.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	lb, _, _, err := s.Acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC)
	saves := []struct {
		lease checkpoint.Lease
		cp    checkpoint.Checkpoint
	}{
		{la, checkpoint.Checkpoint{Pipeline: "a", Position: "tok-1", Events: 10, SavedAt: at, Generation: 1}},
		{lb, checkpoint.Checkpoint{Pipeline: "b", Position: "0/16B3748", Events: 5, SavedAt: at, Generation: 1}},
		{la, checkpoint.Checkpoint{Pipeline: "a", Position: "tok-2", Events: 25, SavedAt: at.Add(time.Second), Generation: 1}},
		{la, checkpoint.Checkpoint{Pipeline: "a", Position: "tok-3", Events: 40, SavedAt: at.Add(2 * time.Second), Generation: 1}},
	}
	for _, sv := range saves {
		if err := s.Save(ctx, sv.lease, sv.cp); err != nil {
			t.Fatalf("Save(%v): %v", sv.cp, err)
		}
	}
	// A new Store on the same file (a restart) sees the latest saves.
	s2 := New(path)
	tests := []struct {
		pipeline  string
		want      checkpoint.Checkpoint
		wantFound bool
	}{
		{"a", saves[3].cp, true},
		{"b", saves[1].cp, true},
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
	if got, found, err := New(path).Load(ctx, "a"); err != nil || found || got.Generation != 2 {
		t.Errorf("Load(a) after Reset = %+v, found %v, %v; want none, generation 2", got, found, err)
	}
	if got, found, _ := New(path).Load(ctx, "b"); !found || got != saves[1].cp {
		t.Errorf("Load(b) after Reset(a) = %+v, %v; want %+v", got, found, saves[1].cp)
	}
}

// TestTwoProcessesShareTheFile: Store values on one file, each acquiring
// in its own goroutine, exclude each other through the lock file, so every
// Acquire gets a generation of its own (without the lock, two would read
// the same generation and write the same next one).
func TestTwoProcessesShareTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.json")
	const procs, rounds = 4, 15
	var (
		mu   sync.Mutex
		gens []uint64
		wg   sync.WaitGroup
	)
	for p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := New(path)
			for range rounds {
				lease, cp, _, err := s.Acquire(ctx, "shared")
				if err != nil {
					t.Errorf("process %d: Acquire: %v", p, err)
					return
				}
				// Another process may have acquired since: then the save is fenced.
				err = s.Save(ctx, lease, checkpoint.Checkpoint{Pipeline: "shared", Position: "x", Events: cp.Events + 1})
				if err != nil && !errors.Is(err, checkpoint.ErrFenced) {
					t.Errorf("process %d: Save: %v", p, err)
				}
				mu.Lock()
				gens = append(gens, lease.Generation)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(gens)
	for i, g := range gens {
		if g != uint64(i+1) {
			t.Fatalf("generations %v: want 1 to %d, each once", gens, procs*rounds)
		}
	}
}

func TestCorruptFileIsPermanent(t *testing.T) {
	ctx := context.Background()
	tests := []struct{ name, content, want string }{
		{"truncated", `{"version":1,"pipelines":{"a":{"posi`, "is corrupt"},
		{"not json", "hello", "is corrupt"},
		{"unknown field", `{"version":2,"pipelines":{"a":{"position":"p","lsn":"x"}}}`, "is corrupt"},
		{"future version", `{"version":9,"pipelines":{}}`, "format version 9, this build reads 1 to 2"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "cp.json")
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		s := New(path)
		_, _, loadErr := s.Load(ctx, "a")
		_, _, _, acquireErr := s.Acquire(ctx, "a")
		saveErr := s.Save(ctx, checkpoint.Lease{Pipeline: "a", Generation: 1}, checkpoint.Checkpoint{Pipeline: "a", Position: "p"})
		resetErr := s.Reset(ctx, "a")
		for op, err := range map[string]error{"Load": loadErr, "Acquire": acquireErr, "Save": saveErr, "Reset": resetErr} {
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "move it away to start every pipeline in it over") ||
				!strings.Contains(err.Error(), path) || !errors.Is(err, checkpoint.ErrCorrupt) || !fault.IsPermanent(err) {
				t.Errorf("%s: %s = %v; want a permanent ErrCorrupt naming the file, containing %q and how to repair it", tt.name, op, err, tt.want)
			}
		}
		b, _ := os.ReadFile(path)
		if string(b) != tt.content {
			t.Errorf("%s: the corrupt file was changed to %q", tt.name, b)
		}
	}
}

// TestVersion1File: a file of the version before generations is read as
// generation 0 and written back as version 2.
func TestVersion1File(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cp.json")
	v1 := `{"version":1,"pipelines":{"a":{"position":"tok-7","events":7,"saved_at":"2026-01-02T03:04:05.006Z"}}}`
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := New(path)
	want := checkpoint.Checkpoint{Pipeline: "a", Position: "tok-7", Events: 7, SavedAt: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)}
	if got, found, err := s.Load(ctx, "a"); err != nil || !found || got != want {
		t.Fatalf("Load of a version 1 file = %+v, %v, %v; want %+v", got, found, err, want)
	}
	lease, got, found, err := s.Acquire(ctx, "a")
	want.Generation = 1
	if err != nil || !found || got != want || lease.Generation != 1 {
		t.Fatalf("Acquire = %+v, %+v, %v, %v; want generation 1 and %+v", lease, got, found, err, want)
	}
	var f struct{ Version int }
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 2 {
		t.Errorf("file after Acquire: version %d (%v), want 2:\n%s", f.Version, err, b)
	}
}

func TestLeftoverTempFileIsIgnored(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.json")
	s := New(path)
	lease, _, _, err := s.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := checkpoint.Checkpoint{Pipeline: "a", Position: "p1", Events: 3, SavedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Generation: lease.Generation}
	if err := s.Save(ctx, lease, want); err != nil {
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
	if err := s.Save(ctx, lease, checkpoint.Checkpoint{Pipeline: "a", Position: "p2", Events: 4, SavedAt: want.SavedAt}); err != nil {
		t.Errorf("Save with a leftover temporary file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, ","), ".cp.json.tmp-123,cp.json,cp.json.lock"; got != want {
		t.Errorf("folder holds %s, want %s (no new temporary file left)", got, want)
	}
}

func TestMissingFolderIsPermanent(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "missing", "cp.json"))
	_, _, _, err := s.Acquire(context.Background(), "a")
	if err == nil || !fault.IsPermanent(err) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Acquire in a missing folder = %v, want a permanent error saying the folder does not exist", err)
	}
}
