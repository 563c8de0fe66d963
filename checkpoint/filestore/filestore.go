// Package filestore keeps checkpoints in a local JSON file, for runs without
// a ClickHouse checkpoint table (a laptop, a single container with a volume).
//
// The file holds every pipeline's newest entry: its checkpoint (or a reset)
// and the generation (lease, see package checkpoint) it was written under.
// Acquire, Save and Reset read, change and replace the file while holding
// an exclusive flock on a lock file beside it (<file>.lock, left in place),
// so that two processes sharing the file cannot interleave; Acquire writes
// the next generation, so that an earlier process's saves fail with
// checkpoint.ErrFenced. Each change replaces the file atomically (temporary
// file in the same folder, fsync, rename, fsync of the folder), so a crash
// leaves either the old or the new file, never a torn one. Load reads
// without the lock (the rename is atomic), so it works on a read-only copy.
//
// Format version 2 added the generation and reset fields; files of version
// 1 are read as generation 0 and written back as version 2.
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
	"github.com/tributary-cdc/tributary/internal/fault"
	"github.com/tributary-cdc/tributary/source"
)

var _ checkpoint.Store = (*Store)(nil)

// formatVersion is the version field of the files this build writes; it
// reads 1 and 2.
const formatVersion = 2

// Store keeps checkpoints in one JSON file. It is safe for concurrent use,
// and several processes (or Stores) may share the file.
type Store struct {
	path string
	mu   sync.Mutex
	now  func() time.Time
}

// file is the JSON layout.
type file struct {
	Version   int               `json:"version"`
	Pipelines map[string]record `json:"pipelines"`
}

// record is a pipeline's newest entry: a checkpoint, or a reset.
type record struct {
	Position   string    `json:"position"`
	Events     uint64    `json:"events"`
	SavedAt    time.Time `json:"saved_at"`
	Generation uint64    `json:"generation"`      // 0 in version 1 files
	Reset      bool      `json:"reset,omitempty"` // no checkpoint: the pipeline starts over
}

// New returns a store keeping its checkpoints in the file at path; the file
// need not exist, its folder must exist by the first Acquire, Save or Reset.
func New(path string) *Store { return &Store{path: path, now: time.Now} }

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// lock takes the exclusive lock of the file (see the package comment) and
// returns its release.
func (s *Store) lock() (unlock func(), err error) {
	name := s.path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fault.Permanent(fmt.Errorf("checkpoint folder %s does not exist (--checkpoint.file %s): create it", filepath.Dir(s.path), s.path))
	}
	if err != nil {
		return nil, fmt.Errorf("open checkpoint lock file: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the flock
}

// read returns the file's content; a missing file is an empty one, a file
// that does not parse is a permanent error that says how to repair it
// (never silently reset).
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
		return f, checkpoint.Corrupt(fmt.Sprintf("checkpoint file %s is corrupt (%v): restore it from a backup, or move it away to start every pipeline in it over from its configured start", s.path, err))
	}
	if f.Version < 1 || f.Version > formatVersion {
		return f, checkpoint.Corrupt(fmt.Sprintf("checkpoint file %s has format version %d, this build reads 1 to %d: run the tributary that wrote it, or move it away to start every pipeline in it over from its configured start",
			s.path, f.Version, formatVersion))
	}
	if f.Pipelines == nil {
		f.Pipelines = map[string]record{}
	}
	f.Version = formatVersion // written back in this build's format
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

// update runs change on the file's content under the lock and writes the
// result back when change asks for it.
func (s *Store) update(change func(f *file) (write bool, err error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	f, err := s.read()
	if err != nil {
		return err
	}
	write, err := change(&f)
	if err != nil || !write {
		return err
	}
	return s.write(f)
}

// checkpointOf returns r as a checkpoint, and whether it is one (not a reset).
func checkpointOf(pipeline string, r record) (checkpoint.Checkpoint, bool) {
	if r.Reset {
		return checkpoint.Checkpoint{Pipeline: pipeline, Generation: r.Generation}, false
	}
	return checkpoint.Checkpoint{Pipeline: pipeline, Position: source.Position(r.Position), Events: r.Events,
		SavedAt: r.SavedAt.UTC(), Generation: r.Generation}, true
}

// Load returns the checkpoint of pipeline; a missing file means none. When
// found is false but the pipeline has an entry (it was reset, or started
// from scratch and saved nothing yet), cp carries its Generation.
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
	cp, found := checkpointOf(pipeline, r)
	return cp, found, nil
}

// Acquire writes the pipeline's entry under the next generation, carrying
// its checkpoint (or its absence) forward, and returns that generation's
// lease with the checkpoint (its Generation is the new one).
func (s *Store) Acquire(ctx context.Context, pipeline string) (checkpoint.Lease, checkpoint.Checkpoint, bool, error) {
	if pipeline == "" {
		return checkpoint.Lease{}, checkpoint.Checkpoint{}, false, fault.Permanent(errors.New("acquire checkpoint: empty pipeline name"))
	}
	var carried record
	err := s.update(func(f *file) (bool, error) {
		r, ok := f.Pipelines[pipeline]
		if !ok {
			r = record{Reset: true, SavedAt: s.now().UTC().Truncate(time.Millisecond)}
		}
		r.Generation++
		f.Pipelines[pipeline] = r
		carried = r
		return true, nil
	})
	if err != nil {
		return checkpoint.Lease{}, checkpoint.Checkpoint{}, false, fmt.Errorf("acquire checkpoint of pipeline %q: %w", pipeline, err)
	}
	cp, found := checkpointOf(pipeline, carried)
	return checkpoint.Lease{Pipeline: pipeline, Generation: carried.Generation}, cp, found, nil
}

// Save records cp under lease, durably, before it returns, after
// checkpoint.CheckSave approved it against the pipeline's entry. A zero
// SavedAt is set to now.
func (s *Store) Save(ctx context.Context, lease checkpoint.Lease, cp checkpoint.Checkpoint) error {
	if err := checkpoint.CheckSave(lease, cp, checkpoint.Newest{Exists: true, Generation: lease.Generation}); err != nil {
		return err
	}
	if cp.SavedAt.IsZero() {
		cp.SavedAt = s.now()
	}
	err := s.update(func(f *file) (bool, error) {
		r, ok := f.Pipelines[cp.Pipeline]
		if err := checkpoint.CheckSave(lease, cp, checkpoint.Newest{Exists: ok, Generation: r.Generation, Events: r.Events}); err != nil {
			return false, err
		}
		f.Pipelines[cp.Pipeline] = record{Position: string(cp.Position), Events: cp.Events,
			SavedAt: cp.SavedAt.UTC().Truncate(time.Millisecond), Generation: lease.Generation}
		return true, nil
	})
	if err != nil {
		if fault.IsPermanent(err) {
			return err // says all, with the pipeline's name
		}
		return fmt.Errorf("save checkpoint of pipeline %q: %w", cp.Pipeline, err)
	}
	return nil
}

// Reset replaces the pipeline's entry with a reset in the next generation,
// so that it starts over and every lease is fenced: a running pipeline
// stops at its next save. Other pipelines keep theirs; a pipeline without
// an entry (so without a lease) is left alone.
func (s *Store) Reset(ctx context.Context, pipeline string) error {
	err := s.update(func(f *file) (bool, error) {
		r, ok := f.Pipelines[pipeline]
		if !ok {
			return false, nil
		}
		f.Pipelines[pipeline] = record{Reset: true, SavedAt: s.now().UTC().Truncate(time.Millisecond), Generation: r.Generation + 1}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("reset checkpoint of pipeline %q: %w", pipeline, err)
	}
	return nil
}

// Close does nothing: the store holds no open file between calls.
func (s *Store) Close() error { return nil }
