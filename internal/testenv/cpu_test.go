package testenv

import (
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
