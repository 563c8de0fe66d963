package freelist

import (
	"runtime"
	"testing"
)

// TestKeepsAcrossCollections: what sync.Pool loses to two collections a
// List still hands out, up to its capacity, in the order it was put.
func TestKeepsAcrossCollections(t *testing.T) {
	l := New[*[]byte](2)
	a, b, c := new([]byte), new([]byte), new([]byte)
	l.Put(a)
	l.Put(b)
	l.Put(c) // full: dropped
	runtime.GC()
	runtime.GC()
	for i, want := range []*[]byte{a, b} {
		got, ok := l.Get()
		if !ok || got != want {
			t.Fatalf("Get %d = %p, %v; want %p", i, got, ok, want)
		}
	}
	if got, ok := l.Get(); ok {
		t.Fatalf("Get on an empty list = %p, true", got)
	}
}

func TestZeroAndEmptyKeepNothing(t *testing.T) {
	for _, l := range []List[int]{{}, New[int](0), New[int](-1)} {
		l.Put(1)
		if v, ok := l.Get(); ok {
			t.Errorf("Get = %d, true; want nothing kept", v)
		}
	}
}
