//go:build unix

package filestore

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on f, waiting for another holder to
// release it. flock locks belong to the open file, so two Stores of one
// process exclude each other as two processes do.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			if err != nil {
				return fmt.Errorf("lock %s: %w", f.Name(), err)
			}
			return nil
		}
	}
}
