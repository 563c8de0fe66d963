//go:build !linux

package main

import "os"

// isTerminal reports whether f is a terminal; off Linux it says no, so that
// checkpoint reset needs --yes there.
func isTerminal(f *os.File) bool { return false }
