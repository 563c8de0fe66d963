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

	"github.com/tributary-cdc/tributary/internal/fault"
)

// APIError is an HTTP error answer of the API. Its Permanent method says
// whether retrying cannot help (see classifyStatus); a 429 or 503 that asked
// for a pause is wrapped with fault.WithRetryAfter. Find it in an error's
// chain with errors.As.
type APIError struct {
	Method, Path string // the request, without its query (which may hold a token)
	Status       int    // the HTTP status
	APICode      string // the classic body's apiErrorCode (the suite's errorCode), if any
	Message      string // the server's message, or the start of its body
	FieldErrors  string // the classic body's fieldErrors, as JSON, if any
	Hint         string // what to do about it, when the client knows
	permanent    bool   // retrying cannot help
}

// Error names the request, the status, the server's message and the hint.
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
	if e.Hint != "" {
		fmt.Fprintf(&b, "; %s", e.Hint)
	}
	return b.String()
}

// Permanent reports whether retrying cannot help (fault.IsPermanent looks
// for this method).
func (e *APIError) Permanent() bool { return e.permanent }

// ErrMalformed is in the chain of every (transient) error about a 2xx answer
// whose body is not what the API promises: not JSON, truncated, no
// pagingToken, too large.
var ErrMalformed = errors.New("malformed body")

// httpDoer performs GET requests with a timeout and authentication, one
// attempt per call.
type httpDoer struct {
	cfg    Config
	base   *url.URL
	client *http.Client
	limit  *limiter // the request budget every request of this API goes through

	tokMu    sync.Mutex
	tok      string
	tokMtime time.Time
	tokSize  int64
	tokStale bool // the server refused tok: read the file again on the next attempt
}

func newDoer(cfg Config) (*httpDoer, error) {
	base, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("parse --api.url: %w", err))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.MaxConcurrency + 2
	tr.ResponseHeaderTimeout = cfg.RequestTimeout
	d := &httpDoer{cfg: cfg, base: base, client: &http.Client{Transport: tr}, tok: cfg.Token, limit: newLimiter(cfg.MaxConcurrency)}
	if cfg.TokenFile != "" {
		if _, err := d.token(); err != nil {
			return nil, fault.Permanent(err)
		}
	}
	return d, nil
}

// token returns the bearer token, re-reading the token file when it changed
// or when the server refused the token last read.
func (d *httpDoer) token() (string, error) {
	if d.cfg.TokenFile == "" {
		return d.tok, nil
	}
	d.tokMu.Lock()
	defer d.tokMu.Unlock()
	st, err := os.Stat(d.cfg.TokenFile)
	if err != nil {
		if d.tok != "" {
			return d.tok, nil // keep the last token while the file is being replaced
		}
		return "", fmt.Errorf("read --api.token-file: %w", err)
	}
	if d.tok != "" && !d.tokStale && st.ModTime().Equal(d.tokMtime) && st.Size() == d.tokSize {
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
		return "", fmt.Errorf("read --api.token-file %s: %w", d.cfg.TokenFile, err)
	}
	d.tok, d.tokMtime, d.tokSize, d.tokStale = tok, st.ModTime(), st.Size(), false
	return tok, nil
}

// refused notes that the server refused the token: the next attempt reads
// the token file again even if it looks unchanged.
func (d *httpDoer) refused() {
	d.tokMu.Lock()
	d.tokStale = true
	d.tokMu.Unlock()
}

func (d *httpDoer) close() { d.client.CloseIdleConnections() }

// getJSON makes one GET of path?query and hands the body of a 2xx answer to
// decode, which owns it from then on (every body is read into a fresh
// buffer, so decoded events may point into it). It never retries: a failure comes back classified with
// internal/fault (see classifyStatus; every failure without an answer, and a
// body decode refuses, is transient), its message naming the request but
// never its query or the bearer token.
func (d *httpDoer) getJSON(ctx context.Context, path string, query url.Values, decode func([]byte) error) error {
	body, err := d.attempt(ctx, path, query)
	if err != nil {
		return err
	}
	if err := decode(body); err != nil {
		return fmt.Errorf("GET %s: HTTP 200 with a %w: %w", path, ErrMalformed, err)
	}
	return nil
}

// attempt performs one GET, within the request budget (the limiter); it
// returns the body of a 2xx answer or a classified error.
func (d *httpDoer) attempt(ctx context.Context, path string, query url.Values) ([]byte, error) {
	tok, err := d.token()
	if err != nil {
		// Only before any token was read (newDoer reads it): the file may
		// be written in a moment, like a rotated token.
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	release, err := d.limit.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	outcome, pause := OutcomeOverload, time.Duration(0)
	defer func() { release(outcome, pause) }()
	u := *d.base
	u.Path = d.base.Path + path
	u.RawQuery = query.Encode()
	actx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fault.Permanent(fmt.Errorf("GET %s: %w", path, err))
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
		if ctx.Err() != nil {
			outcome = OutcomeCancelled
		}
		return nil, fmt.Errorf("GET %s: %w", path, d.noAnswer(ctx, actx, err))
	}
	defer resp.Body.Close()
	body, err := readBody(resp)
	d.observe(resp.StatusCode, start)
	if err != nil {
		if ctx.Err() != nil {
			outcome = OutcomeCancelled
		}
		return nil, fmt.Errorf("GET %s: HTTP %d, reading the body: %w", path, resp.StatusCode, d.noAnswer(ctx, actx, err))
	}
	outcome, pause = loadOutcome(resp.StatusCode, resp.Header.Get("Retry-After"), time.Now())
	if resp.StatusCode/100 == 2 {
		if len(body) > maxBodyBytes {
			return nil, fmt.Errorf("GET %s: HTTP %d with a %w: larger than %d bytes", path, resp.StatusCode, ErrMalformed, maxBodyBytes)
		}
		return body, nil
	}
	e := &APIError{Method: http.MethodGet, Path: path, Status: resp.StatusCode}
	parseErrorBody(e, body)
	return nil, d.classifyStatus(e, query, resp.Header.Get("Retry-After"), time.Now())
}

// loadOutcome says what an answer tells the request budget: a 429, or a
// 503 with Retry-After, throttles (pausing every request for the pause it
// returns); another 5xx or a 408 is overload; anything else is fine.
func loadOutcome(status int, retryAfterHeader string, now time.Time) (string, time.Duration) {
	switch {
	case status == http.StatusTooManyRequests:
		return OutcomeThrottled, retryAfter(retryAfterHeader, now)
	case status == http.StatusServiceUnavailable && strings.TrimSpace(retryAfterHeader) != "":
		return OutcomeThrottled, retryAfter(retryAfterHeader, now)
	case status == http.StatusRequestTimeout || status >= 500:
		return OutcomeOverload, 0
	}
	return OutcomeOK, 0
}

// noAnswer returns the cause of a request that got no (complete) answer:
// the caller's context error, a timeout naming --api.request-timeout, or the
// transport's error without the request URL (which holds the query).
func (d *httpDoer) noAnswer(ctx, actx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if actx.Err() != nil {
		return fmt.Errorf("no answer within --api.request-timeout %s: %w", d.cfg.RequestTimeout, actx.Err())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("no answer within --api.request-timeout %s: %w", d.cfg.RequestTimeout, ue.Err)
		}
		return ue.Err
	}
	return err
}

// classifyStatus marks e, an error answer to a request with query:
//
//   - 429, and 503 with Retry-After: transient, with the pause asked for;
//   - 408 and every 5xx: transient;
//   - 401/403: transient with --api.token-file (the file is read again on
//     the next attempt, so a rotated token heals without a restart),
//     permanent with a literal token;
//   - 400 to a request with a pagingToken: permanent, with a hint to reset
//     the checkpoint;
//   - every other status (other 4xx, or 1xx/3xx that escaped the client):
//     permanent for 4xx, transient otherwise.
func (d *httpDoer) classifyStatus(e *APIError, query url.Values, retryAfterHeader string, now time.Time) error {
	switch s := e.Status; {
	case s == http.StatusTooManyRequests || s == http.StatusServiceUnavailable:
		return fault.WithRetryAfter(e, retryAfter(retryAfterHeader, now))
	case s == http.StatusRequestTimeout || s >= 500:
		return e
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		if d.cfg.TokenFile != "" {
			d.refused()
			e.Hint = fmt.Sprintf("token rejected (HTTP %d); re-reading --api.token-file %s on every attempt", s, d.cfg.TokenFile)
			return e
		}
		e.permanent = true
		e.Hint = fmt.Sprintf("token rejected (HTTP %d): fix --api.token (TRIBUTARY_API_TOKEN) and restart, or use --api.token-file, which is re-read without a restart", s)
		return e
	case s == http.StatusBadRequest && query.Has("pagingToken"):
		e.permanent = true
		e.Hint = "the paging token was refused (saved by another tenant, server or environment?); to start again from --api.start, run `tributary checkpoint reset --pipeline NAME`"
		return e
	case s/100 == 4:
		e.permanent = true
		return e
	}
	return e
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
