package pgrepl

// permanentError marks an error that retrying cannot fix (a refused
// configuration, a dropped slot or publication); the pipeline stops on it.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}
