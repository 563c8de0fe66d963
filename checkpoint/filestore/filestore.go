// Package filestore keeps checkpoints in a local JSON file, for runs without
// a ClickHouse checkpoint table (a laptop, a single container with a volume).
// The file holds every pipeline's checkpoint; each Save replaces it
// atomically (temporary file in the same folder, fsync, rename, fsync of the
// folder), so a crash leaves either the old or the new file, never a torn one.
package filestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tributary-cdc/tributary/checkpoint"
	"github.com/tributary-cdc/tributary/source"
)

var _ checkpoint.Store = (*Store)(nil)

// formatVersion is the version field of the file.
const formatVersion = 1

// Store keeps checkpoints in one JSON file. It is safe for concurrent use
// within one process; two processes must not share a file.
type Store struct {
	path string
	mu   sync.Mutex
}

// file is the JSON layout.
type file struct {
	Version   int               `json:"version"`
	Pipelines map[string]record `json:"pipelines"`
}

type record struct {
	Position string    `json:"position"`
	Events   uint64    `json:"events"`
	SavedAt  time.Time `json:"saved_at"`
}

// New returns a store keeping its checkpoints in the file at path; the file
// and its folder need not exist until the first Save (the folder must then).
func New(path string) *Store { return &Store{path: path} }

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// read returns the file's content; a missing file is an empty one, a file
// that does not parse is an error (never silently reset).
func (s *Store) read() (file, error) {
	f := file{Version: formatVersion, Pipelines: map[string]record{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("read checkpoint file: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("checkpoint file %s is corrupt (%v): restore it, or remove it to start every pipeline over", s.path, err)
	}
	if f.Version != formatVersion {
		return f, fmt.Errorf("checkpoint file %s has format version %d, this build reads %d", s.path, f.Version, formatVersion)
	}
	if f.Pipelines == nil {
		f.Pipelines = map[string]record{}
	}
	return f, nil
}

// write replaces the file atomically and durably.
func (s *Store) write(f file) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode checkpoints: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary checkpoint file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("replace checkpoint file: %w", err)
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open checkpoint folder to fsync it: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync checkpoint folder %s: %w", dir, err)
	}
	return nil
}

// Load returns the checkpoint of pipeline; a missing file means none.
func (s *Store) Load(ctx context.Context, pipeline string) (checkpoint.Checkpoint, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.read()
	if err != nil {
		return checkpoint.Checkpoint{}, false, err
	}
	r, ok := f.Pipelines[pipeline]
	if !ok {
		return checkpoint.Checkpoint{}, false, nil
	}
	return checkpoint.Checkpoint{Pipeline: pipeline, Position: source.Position(r.Position), Events: r.Events, SavedAt: r.SavedAt.UTC()}, true, nil
}

// Save records cp, durably, before it returns. A zero SavedAt is set to now.
// Acquire returns the latest checkpoint with a lease. (Stub: generations
// are not kept yet.)
func (s *Store) Acquire(ctx context.Context, pipeline string) (checkpoint.Lease, checkpoint.Checkpoint, bool, error) {
	cp, found, err := s.Load(ctx, pipeline)
	return checkpoint.Lease{Pipeline: pipeline}, cp, found, err
}

func (s *Store) Save(ctx context.Context, _ checkpoint.Lease, cp checkpoint.Checkpoint) error {
	if cp.Pipeline == "" {
		return errors.New("save checkpoint: empty pipeline name")
	}
	if cp.SavedAt.IsZero() {
		cp.SavedAt = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.read()
	if err != nil {
		return err
	}
	f.Pipelines[cp.Pipeline] = record{Position: string(cp.Position), Events: cp.Events, SavedAt: cp.SavedAt.UTC().Truncate(time.Millisecond)}
	if err := s.write(f); err != nil {
		return fmt.Errorf("save checkpoint of %s: %w", cp.Pipeline, err)
	}
	return nil
}

// Reset forgets the checkpoint of pipeline; other pipelines keep theirs.
func (s *Store) Reset(ctx context.Context, pipeline string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.read()
	if err != nil {
		return err
	}
	if _, ok := f.Pipelines[pipeline]; !ok {
		return nil
	}
	delete(f.Pipelines, pipeline)
	if err := s.write(f); err != nil {
		return fmt.Errorf("reset checkpoint of %s: %w", pipeline, err)
	}
	return nil
}

// Close does nothing: the store holds no open file between calls.
func (s *Store) Close() error { return nil }
