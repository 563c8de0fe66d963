package eventapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tributary-cdc/tributary/internal/backoff"
)

// Retry reasons passed to Config.OnRetry.
const (
	ReasonNetwork   = "network"   // no response, a timeout, or a body cut short
	Reason5xx       = "5xx"       // a server error
	Reason429       = "429"       // rate limited
	ReasonMalformed = "malformed" // a response that is not the expected JSON
)

// ErrPermanent is wrapped by every error that retrying cannot fix: 401, 403, a
// rejected paging token (400), other 4xx, or a server that keeps answering
// malformed JSON. Test with errors.Is(err, ErrPermanent), or through the
// Permanent() bool method those errors have; errors.As into *APIError gives
// the status and the server's message.
var ErrPermanent = errors.New("permanent event-stream API error")

// APIError is an HTTP error answer of the API.
type APIError struct {
	Method, Path string // the request, without its query (which may hold a token)
	Status       int    // the HTTP status
	APICode      string // the classic body's apiErrorCode, if any
	Message      string // the server's message, or the start of its body
	FieldErrors  string // the classic body's fieldErrors, as JSON, if any
	permanent    bool   // retrying cannot help
}

// Error names the request, the status and the server's message.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: HTTP %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.APICode != "" {
		fmt.Fprintf(&b, " (%s)", e.APICode)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.FieldErrors != "" {
		fmt.Fprintf(&b, "; field errors: %s", e.FieldErrors)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrPermanent) true for permanent errors.
func (e *APIError) Is(target error) bool { return target == ErrPermanent && e.permanent }

// Permanent reports whether retrying cannot help (the pipeline looks for this
// method).
func (e *APIError) Permanent() bool { return e.permanent }

// malformedError is a 2xx answer whose body is not what the API promises.
type malformedError struct{ err error }

func (e *malformedError) Error() string { return "malformed response: " + e.err.Error() }
func (e *malformedError) Unwrap() error { return e.err }

// permanentMalformed is returned once MaxMalformed malformed answers in a row
// have been retried.
type permanentMalformed struct {
	path string
	n    int
	err  error
}

func (e *permanentMalformed) Error() string {
	return fmt.Sprintf("GET %s: %d malformed responses in a row, giving up: %v", e.path, e.n, e.err)
}
func (e *permanentMalformed) Unwrap() []error { return []error{ErrPermanent, e.err} }

// Permanent reports true: the pipeline stops.
func (e *permanentMalformed) Permanent() bool { return true }

// httpDoer performs GET requests with timeouts, authentication and retries.
type httpDoer struct {
	cfg    Config
	base   *url.URL
	client *http.Client

	tokMu    sync.Mutex
	tok      string
	tokMtime time.Time
	tokSize  int64
}

func newDoer(cfg Config) (*httpDoer, error) {
	base, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil {
		return nil, fmt.Errorf("parse --api.url: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.EnrichConcurrency + cfg.Prefetch + 2
	tr.ResponseHeaderTimeout = cfg.RequestTimeout
	d := &httpDoer{cfg: cfg, base: base, client: &http.Client{Transport: tr}, tok: cfg.Token}
	if cfg.TokenFile != "" {
		if _, err := d.token(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// token returns the bearer token, re-reading the token file when it changed.
func (d *httpDoer) token() (string, error) {
	if d.cfg.TokenFile == "" {
		return d.tok, nil
	}
	d.tokMu.Lock()
	defer d.tokMu.Unlock()
	st, err := os.Stat(d.cfg.TokenFile)
	if err != nil {
		if d.tok != "" {
			return d.tok, nil // keep the last good token while the file is being replaced
		}
		return "", fmt.Errorf("read token file: %w", err)
	}
	if d.tok != "" && st.ModTime().Equal(d.tokMtime) && st.Size() == d.tokSize {
		return d.tok, nil
	}
	tok, err := readTokenFile(d.cfg.TokenFile)
	if err != nil || tok == "" {
		if d.tok != "" {
			return d.tok, nil
		}
		if err == nil {
			err = errors.New("empty")
		}
		return "", fmt.Errorf("read token file %s: %w", d.cfg.TokenFile, err)
	}
	d.tok, d.tokMtime, d.tokSize = tok, st.ModTime(), st.Size()
	return tok, nil
}

func (d *httpDoer) close() { d.client.CloseIdleConnections() }

// getJSON GETs path?query and hands the body of a 2xx answer to decode,
// retrying transient failures (and decode errors, as malformed) with backoff
// until ctx is done. It returns a permanent error (wrapping ErrPermanent) or
// ctx's error.
func (d *httpDoer) getJSON(ctx context.Context, path string, query url.Values, decode func([]byte) error) error {
	u := *d.base
	u.Path = d.base.Path + path
	u.RawQuery = query.Encode()
	full := u.String()
	var (
		attempt   int
		malformed int
	)
	for {
		body, retryAfter, err := d.attempt(ctx, full, path)
		if err == nil {
			if derr := decode(body); derr != nil {
				err = &malformedError{derr}
			} else {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		reason, retry := classify(err)
		if !retry {
			return err
		}
		if reason == ReasonMalformed {
			malformed++
			if malformed >= d.cfg.MaxMalformed {
				return &permanentMalformed{path: path, n: malformed, err: err}
			}
		} else {
			malformed = 0
		}
		wait := backoff.Delay(attempt, minBackoff, d.cfg.MaxBackoff)
		if retryAfter > 0 {
			wait = retryAfter
		}
		attempt++
		if d.cfg.OnRetry != nil {
			d.cfg.OnRetry(reason)
		}
		d.cfg.Logger.Warn("event-stream request failed, retrying", "path", path, "reason", reason, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// attempt performs one GET; it returns the body of a 2xx answer, or an error
// and the delay a 429/503 asked for.
func (d *httpDoer) attempt(ctx context.Context, full, path string) ([]byte, time.Duration, error) {
	tok, err := d.token()
	if err != nil {
		return nil, 0, &APIError{Method: "GET", Path: path, Status: 0, Message: err.Error(), permanent: true}
	}
	actx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, full, nil)
	if err != nil {
		return nil, 0, &APIError{Method: "GET", Path: path, Message: err.Error(), permanent: true}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		d.observe(0, start)
		return nil, 0, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := readBody(resp)
	d.observe(resp.StatusCode, start)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: read body: %w", path, err)
	}
	if resp.StatusCode/100 == 2 {
		if len(body) > maxBodyBytes {
			return nil, 0, &malformedError{fmt.Errorf("body larger than %d bytes", maxBodyBytes)}
		}
		return body, 0, nil
	}
	e := &APIError{Method: "GET", Path: path, Status: resp.StatusCode}
	e.permanent = resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusRequestTimeout
	parseErrorBody(e, body)
	var wait time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		wait = retryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return nil, wait, e
}

// readBody reads a response body of at most maxBodyBytes+1 bytes, in one
// allocation when the server announced its length.
func readBody(resp *http.Response) ([]byte, error) {
	r := io.LimitReader(resp.Body, maxBodyBytes+1)
	if n := resp.ContentLength; n > 0 && n <= maxBodyBytes {
		buf := bytes.NewBuffer(make([]byte, 0, n+1))
		_, err := buf.ReadFrom(r)
		return buf.Bytes(), err
	}
	return io.ReadAll(r)
}

func (d *httpDoer) observe(status int, start time.Time) {
	if d.cfg.OnRequest != nil {
		d.cfg.OnRequest(status, time.Since(start))
	}
}

// classify returns the retry reason of err and whether it is retried.
func classify(err error) (string, bool) {
	var ae *APIError
	var me *malformedError
	switch {
	case errors.Is(err, ErrPermanent):
		return "", false
	case errors.As(err, &ae):
		switch {
		case ae.Status == http.StatusTooManyRequests:
			return Reason429, true
		case ae.Status == http.StatusRequestTimeout:
			return ReasonNetwork, true
		case ae.Status >= 500:
			return Reason5xx, true
		}
		return "", false
	case errors.As(err, &me):
		return ReasonMalformed, true
	}
	return ReasonNetwork, true
}

// maxRetryAfter caps a server's Retry-After, so a bogus header cannot stall
// the pipeline for hours.
const maxRetryAfter = 5 * time.Minute

// retryAfter parses a Retry-After header (seconds or an HTTP date) relative to
// now; it returns 0 when absent or unparsable.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseFloat(h, 64); err == nil {
		d = time.Duration(s * float64(time.Second))
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	} else {
		return 0
	}
	if d <= 0 {
		return time.Millisecond
	}
	return min(d, maxRetryAfter)
}

// parseErrorBody fills e's message from the body of an error answer: the
// classic {apiErrorCode, httpErrorCode, httpStatus, message, fieldErrors}, the
// suite's {httpStatus, httpErrorCode, errorCode, message}, a generic {error},
// or the start of the body.
func parseErrorBody(e *APIError, body []byte) {
	var v struct {
		APIErrorCode json.RawMessage `json:"apiErrorCode"`
		ErrorCode    json.RawMessage `json:"errorCode"`
		Message      string          `json:"message"`
		Error        string          `json:"error"`
		FieldErrors  json.RawMessage `json:"fieldErrors"`
	}
	if json.Unmarshal(body, &v) == nil && (v.Message != "" || v.Error != "" || len(v.APIErrorCode) > 0 || len(v.ErrorCode) > 0) {
		if len(v.APIErrorCode) == 0 {
			v.APIErrorCode = v.ErrorCode
		}
		e.Message = v.Message
		if e.Message == "" {
			e.Message = v.Error
		}
		if len(v.APIErrorCode) > 0 && string(v.APIErrorCode) != "null" {
			e.APICode = strings.Trim(string(v.APIErrorCode), `"`)
		}
		if fe := strings.TrimSpace(string(v.FieldErrors)); fe != "" && fe != "null" && fe != "{}" && fe != "[]" {
			e.FieldErrors = fe
		}
		return
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	e.Message = s
}
