// Package fault is how adapters (sources, the sink, the checkpoint stores)
// classify what went wrong, and how the pipeline, the one owner of retries,
// reads it. An adapter makes one attempt per call and returns its error
// wrapped by one of the constructors below, or unwrapped:
//
//   - transient (the default: no mark): the pipeline retries the call with
//     backoff, at the earliest after RetryAfter when the error carries one;
//   - Permanent: retrying cannot help (bad credentials, a schema mismatch,
//     an invalid configuration); the pipeline stops with the message;
//   - Poison: the call's input was refused for its content (ClickHouse
//     cannot store a row); the pipeline isolates the offending events and
//     quarantines them.
//
// The marks are methods (Permanent() bool, Poison() bool, RetryAfter()
// time.Duration) found anywhere in the error's chain, so an adapter may also
// put them on its own error types.
package fault

import (
	"errors"
	"time"
)

type permanent struct{ err error }

func (e *permanent) Error() string   { return e.err.Error() }
func (e *permanent) Unwrap() error   { return e.err }
func (e *permanent) Permanent() bool { return true }

type poison struct{ err error }

func (e *poison) Error() string { return e.err.Error() }
func (e *poison) Unwrap() error { return e.err }
func (e *poison) Poison() bool  { return true }

type retryAfter struct {
	err error
	d   time.Duration
}

func (e *retryAfter) Error() string             { return e.err.Error() }
func (e *retryAfter) Unwrap() error             { return e.err }
func (e *retryAfter) RetryAfter() time.Duration { return e.d }

// Permanent marks err as one no retry can fix; nil stays nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanent{err}
}

// Poison marks err as a refusal of the call's input for its content; nil
// stays nil.
func Poison(err error) error {
	if err == nil || IsPoison(err) {
		return err
	}
	return &poison{err}
}

// WithRetryAfter marks a transient err with the pause its source asked for
// (an HTTP Retry-After); nil stays nil, and d <= 0 adds nothing.
func WithRetryAfter(err error, d time.Duration) error {
	if err == nil || d <= 0 {
		return err
	}
	return &retryAfter{err, d}
}

// IsPermanent reports whether err, or an error in its chain, says it is
// permanent through a Permanent() bool method.
func IsPermanent(err error) bool {
	var pe interface{ Permanent() bool }
	return errors.As(err, &pe) && pe.Permanent()
}

// IsPoison reports whether err, or an error in its chain, says the input was
// refused for its content through a Poison() bool method.
func IsPoison(err error) bool {
	var pe interface{ Poison() bool }
	return errors.As(err, &pe) && pe.Poison()
}

// RetryAfter returns the pause err asks for before the next attempt, or 0.
func RetryAfter(err error) time.Duration {
	var re interface{ RetryAfter() time.Duration }
	if errors.As(err, &re) {
		return re.RetryAfter()
	}
	return 0
}
