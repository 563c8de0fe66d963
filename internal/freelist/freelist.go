// Package freelist keeps a bounded number of reusable buffers.
//
// sync.Pool is the usual tool, but the garbage collector empties it: what
// was put in survives at most two collections. tributary's buffers (a
// batch's events, its mapped rows, an INSERT's string columns) are large,
// allocated at a high rate, and so collections come every batch or two;
// then a sync.Pool is mostly empty when asked, every batch allocates its
// buffers anew, and the allocation itself brings the next collection
// (docs/benchmarks.md, issue 16). A List keeps up to its capacity whatever
// the collector does. Since the pipeline's window bounds how many batches
// are alive at once, a capacity of about that size holds every buffer in
// circulation and no more.
package freelist

// List is a bounded free list, safe for concurrent use. The zero List
// keeps nothing.
type List[T any] struct{ ch chan T }

// New returns a list that keeps at most n items (n ≤ 0 keeps none).
func New[T any](n int) List[T] {
	if n <= 0 {
		return List[T]{}
	}
	return List[T]{ch: make(chan T, n)}
}

// Get returns a kept item, or false when there is none.
func (l List[T]) Get() (T, bool) {
	select {
	case v := <-l.ch:
		return v, true
	default:
		var zero T
		return zero, false
	}
}

// Put keeps v for a later Get, unless the list is full: then v is left to
// the collector.
func (l List[T]) Put(v T) {
	select {
	case l.ch <- v:
	default:
	}
}
