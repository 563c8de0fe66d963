package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
)

// ErrNoFile is wrapped by Pipelines' error when the file does not exist.
var ErrNoFile = errors.New("no checkpoint file")

// Pipelines returns the names of the pipelines the file holds an entry for
// (a checkpoint, or a reset), sorted; an error wrapping ErrNoFile when the
// file does not exist. For `tributary status`, which lists what exists.
func (s *Store) Pipelines(ctx context.Context) ([]string, error) {
	if _, err := os.Stat(s.path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("checkpoint file %s does not exist: %w", s.path, ErrNoFile)
	}
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(f.Pipelines))
	for n := range f.Pipelines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}
