//go:build !unix

package filestore

import "os"

// lockFile does nothing where flock is missing: there, only one process
// may use a checkpoint file (the Store's mutex still orders one process's
// calls).
func lockFile(*os.File) error { return nil }
