package testenv

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestBusyCoresSeesASpinningGoroutine(t *testing.T) {
	a := ReadCPU()
	if !a.ok {
		t.Skip("no /proc/stat")
	}
	stop := time.Now().Add(300 * time.Millisecond)
	x := 0
	for time.Now().Before(stop) {
		x++
	}
	b := ReadCPU()
	got := BusyCores(a, b)
	// This goroutine kept one core busy; other processes may add to it.
	if got < 0.7 || got > float64(runtime.NumCPU())+0.01 {
		t.Errorf("BusyCores while spinning = %.2f, want between 0.7 and %d (spins %d)", got, runtime.NumCPU(), x)
	}
	if BusyCores(b, a) != -1 || BusyCores(CPUSample{}, b) != -1 {
		t.Error("BusyCores of samples out of order or empty is not -1")
	}
}

// TestProcessCPUSeesThisProcessSpin spins until this process's reading has
// grown by 50 ms of CPU; a reading that never moves fails after 20 s.
func TestProcessCPUSeesThisProcessSpin(t *testing.T) {
	pid := os.Getpid()
	before := ProcessCPU(pid)
	if before < 0 {
		t.Fatalf("ProcessCPU(%d) = %v, want a reading", pid, before)
	}
	deadline := time.Now().Add(20 * time.Second)
	x := 0
	for ProcessCPU(pid)-before < 50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("20 s of spinning (x=%d) moved ProcessCPU by %v", x, ProcessCPU(pid)-before)
		}
		for range 1_000_000 {
			x++
		}
	}
	if got := ProcessCPU(-5); got != -1 {
		t.Errorf("ProcessCPU of no process = %v, want -1", got)
	}
}
