// Package emulator serves a deterministic imitation of the Socotra event
// stream in both flavors ("suite" and "classic"): paged event reads with
// authenticated paging tokens, the billing look-ups that complete partial
// policy lists, webhooks with retries and diverted events, injected faults,
// and optionally a copy of every event in a PostgreSQL table. Tests use it
// in-process through httptest; `tributary emulate` serves it over TCP.
package emulator

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger
	st  *store

	genMu     sync.Mutex // serializes the simulation and appends
	sim       *sim
	preloaded bool // set once New has preloaded; guarded by genMu after that

	tokenKey []byte
	nonce    atomic.Uint64

	faultMu  sync.Mutex
	faults   FaultConfig
	faultRNG *rand.Rand

	hooks *webhooks
	pg    *pgWriter

	bgCtx    context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
	closed   atomic.Bool
}

// New builds a Server from cfg: it validates cfg, connects to PostgreSQL when
// cfg.PGDSN is set (creating the table if absent) and preloads cfg.Events
// events. Call Close when done.
func New(cfg Config) (*Server, error) {
	return NewWithLogger(cfg, nil)
}

// NewWithLogger is New with a logger for lifecycle messages and webhook
// failures (nil: discard).
func NewWithLogger(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("emulator config: %w", err)
	}
	cfg.applyDefaults()
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	sm, st := newSim(cfg)
	key := sha256.Sum256([]byte(fmt.Sprintf("tributary emulator paging token|%d|%s|%s", cfg.Seed, cfg.Tenant, cfg.Flavor)))
	s := &Server{
		cfg:      cfg,
		log:      log,
		st:       st,
		sim:      sm,
		tokenKey: key[:],
		faults:   cfg.Faults,
		faultRNG: rand.New(rand.NewPCG(uint64(cfg.Seed), 0xfa17)),
	}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	s.hooks = newWebhooks(s)
	if cfg.PGDSN != "" {
		pg, err := newPGWriter(s.bgCtx, cfg.PGDSN, cfg.PGTable, cfg.Tenant, cfg.Flavor)
		if err != nil {
			s.bgCancel()
			return nil, err
		}
		s.pg = pg
	}
	for len(s.st.recs) < cfg.Events {
		if _, err := s.appendN(min(cfg.Events-len(s.st.recs), 20000)); err != nil {
			s.Close()
			return nil, fmt.Errorf("preload events: %w", err)
		}
	}
	s.preloaded = true
	return s, nil
}

// Config returns the server's configuration with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Tenant returns the tenant locator the server answers for.
func (s *Server) Tenant() string { return s.cfg.Tenant }

// appendN generates at least n events (whole requests), writes them to
// PostgreSQL when configured, publishes them and hands them to the webhooks.
// It returns the index of the first new record.
func (s *Server) appendN(n int) (int, error) {
	s.genMu.Lock()
	defer s.genMu.Unlock()
	recs, reqs := s.st.snapshot()
	from := len(recs)
	if s.cfg.LiveClock && s.preloaded {
		s.sim.floorMS = time.Now().UnixMilli()
	}
	newRecs, newReqs := s.sim.generate(n, from, len(reqs))
	if len(newRecs) == 0 {
		return from, nil
	}
	if s.pg != nil {
		if err := s.pg.write(s.bgCtx, s.st, newRecs, newReqs, from); err != nil {
			// The simulation has moved on; the events are still served.
			s.st.publish(newRecs, newReqs)
			return from, err
		}
	}
	s.st.publish(newRecs, newReqs)
	s.hooks.notify(from, from+len(newRecs))
	return from, nil
}

// Append appends at least n more generated events now (whole requests, so
// possibly a few more than n), continuing the simulation deterministically,
// and returns them. Their timestamps are not earlier than any event already
// appended.
func (s *Server) Append(n int) []Event {
	from, err := s.appendN(n)
	if err != nil {
		s.log.Error("append events", "err", err)
	}
	recs, _ := s.st.snapshot()
	return s.st.events(from, len(recs))
}

// Events returns a copy of every event appended so far, in stream order.
func (s *Server) Events() []Event {
	recs, _ := s.st.snapshot()
	return s.st.events(0, len(recs))
}

// Len returns the number of events appended so far.
func (s *Server) Len() int {
	recs, _ := s.st.snapshot()
	return len(recs)
}

// SetFaults changes the injected faults from now on.
func (s *Server) SetFaults(f FaultConfig) {
	if f.RetryAfter == 0 {
		f.RetryAfter = time.Second
	}
	s.faultMu.Lock()
	s.faults = f
	s.faultMu.Unlock()
}

// Start starts live traffic when Config.Rate > 0: events are appended as time
// passes, about Rate per second, until ctx ends or Close is called. It
// returns at once.
func (s *Server) Start(ctx context.Context) {
	if s.cfg.Rate <= 0 {
		return
	}
	s.bgWG.Add(1)
	go func() {
		defer s.bgWG.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		budget := 0.0
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.bgCtx.Done():
				return
			case now := <-tick.C:
				budget += s.cfg.Rate * now.Sub(last).Seconds()
				last = now
				if budget < 1 {
					continue
				}
				before := s.Len()
				if _, err := s.appendN(int(budget)); err != nil {
					s.log.Error("append live events", "err", err)
				}
				budget -= float64(s.Len() - before)
			}
		}
	}()
}

// Close stops live traffic and webhook deliveries and closes the PostgreSQL
// connection. It is safe to call more than once.
func (s *Server) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.bgCancel()
	s.bgWG.Wait()
	s.hooks.close()
	if s.pg != nil {
		return s.pg.close()
	}
	return nil
}

// Handler returns the HTTP API of the configured flavor.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.cfg.Flavor == FlavorClassic {
		mux.HandleFunc("GET /eventstream/events", s.data(func(w *reply, r *http.Request, f draw) { s.list(w, r, f, false) }))
		mux.HandleFunc("GET /eventstream/attributedEvents", s.data(func(w *reply, r *http.Request, f draw) { s.list(w, r, f, true) }))
	} else {
		mux.HandleFunc("GET /event/{tenant}/events/list", s.data(func(w *reply, r *http.Request, f draw) { s.list(w, r, f, false) }))
		mux.HandleFunc("GET /event/{tenant}/events/request/{locator}", s.data(s.requestEvents))
		mux.HandleFunc("GET /event/{tenant}/events/{locator}", s.data(s.oneEvent))
		mux.HandleFunc("GET /billing/{tenant}/invoices/{locator}", s.data(s.getInvoice))
		mux.HandleFunc("GET /billing/{tenant}/payments/{locator}", s.data(s.getPayment))
		mux.HandleFunc("GET /billing/{tenant}/delinquencies/{locator}", s.data(s.getDelinquency))
	}
	s.hooks.routes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rep := &reply{}
		s.fail(rep, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
		rep.flush(w)
	})
	return s.auth(mux)
}

// reply is an answer being built: handlers fill it, the fault layer may spoil it.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r *reply) json(status int, body []byte) { r.status, r.body = status, body }

func (r *reply) flush(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(r.body)))
	}
	w.WriteHeader(r.status)
	w.Write(r.body)
}

// fail fills rep with an error body of the flavor: classic
// {apiErrorCode, httpErrorCode, httpStatus, message, fieldErrors}, suite
// {httpStatus, httpErrorCode, message, errorCode}.
func (s *Server) fail(rep *reply, status int, code, msg string, fieldErrors map[string]string) {
	var b []byte
	if s.cfg.Flavor == FlavorClassic {
		b = append(b, `{"apiErrorCode":`...)
		b = strconv.AppendQuote(b, code)
		b = append(b, `,"httpErrorCode":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, `,"httpStatus":`...)
		b = strconv.AppendQuote(b, http.StatusText(status))
		b = append(b, `,"message":`...)
		b = appendJSONString(b, msg)
		b = append(b, `,"fieldErrors":{`...)
		first := true
		for k, v := range fieldErrors {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, v)
		}
		b = append(b, "}}"...)
	} else {
		b = append(b, `{"httpStatus":`...)
		b = strconv.AppendQuote(b, http.StatusText(status))
		b = append(b, `,"httpErrorCode":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, `,"errorCode":`...)
		b = strconv.AppendQuote(b, code)
		b = append(b, `,"message":`...)
		b = appendJSONString(b, msg)
		b = append(b, '}')
	}
	rep.json(status, b)
}

// appendJSONString appends s as a JSON string (strconv.Quote's escapes are
// valid JSON for the ASCII messages used here).
func appendJSONString(b []byte, s string) []byte { return strconv.AppendQuote(b, s) }

// auth checks the bearer token (401) and the tenant in the path (403).
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || !hmac.Equal([]byte(got), []byte(s.cfg.Token)) {
				rep := &reply{header: http.Header{"Www-Authenticate": {`Bearer realm="socotra"`}}}
				s.fail(rep, http.StatusUnauthorized, "unauthorized", "missing or invalid bearer token", nil)
				rep.flush(w)
				return
			}
		}
		if t := tenantOf(r.URL.Path); t != "" && t != s.cfg.Tenant {
			rep := &reply{}
			s.fail(rep, http.StatusForbidden, "forbidden", "the token does not grant access to tenant "+t, nil)
			rep.flush(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tenantOf returns the tenant segment of /event/{t}/… and /billing/{t}/… paths.
func tenantOf(path string) string {
	for _, p := range []string{"/event/", "/billing/"} {
		if rest, ok := strings.CutPrefix(path, p); ok {
			t, _, _ := strings.Cut(rest, "/")
			return t
		}
	}
	return ""
}

// draw is the fault decision for one request.
type draw struct {
	kind      int // faultNone, …
	status    int
	duplicate int // events to repeat before a token's position
	latency   time.Duration
	retry     time.Duration
}

const (
	faultNone = iota
	faultError
	faultThrottle
	faultTruncate
	faultMalformed
	faultReset
)

// drawFault decides, from the seeded fault RNG, what happens to one request.
func (s *Server) drawFault() draw {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := s.faults
	d := draw{latency: f.Latency, retry: f.RetryAfter}
	u := s.faultRNG.Float64()
	switch {
	case u < f.ErrorRate:
		d.kind = faultError
		d.status = http.StatusInternalServerError
		if s.faultRNG.IntN(2) == 1 {
			d.status = http.StatusServiceUnavailable
		}
	case u < f.ErrorRate+f.ThrottleRate:
		d.kind = faultThrottle
	case u < f.ErrorRate+f.ThrottleRate+f.TruncateRate:
		d.kind = faultTruncate
	case u < f.ErrorRate+f.ThrottleRate+f.TruncateRate+f.MalformedRate:
		d.kind = faultMalformed
	case u < f.ErrorRate+f.ThrottleRate+f.TruncateRate+f.MalformedRate+f.ResetRate:
		d.kind = faultReset
	}
	if s.faultRNG.Float64() < f.DuplicateRate {
		d.duplicate = 1 + s.faultRNG.IntN(3)
	}
	return d
}

// data wraps a data endpoint with the fault layer.
func (s *Server) data(h func(*reply, *http.Request, draw)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d := s.drawFault()
		if d.latency > 0 {
			t := time.NewTimer(d.latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		rep := &reply{}
		switch d.kind {
		case faultReset:
			resetConnection(w)
			return
		case faultError:
			s.fail(rep, d.status, "internal_error", "injected fault: server error", nil)
			rep.flush(w)
			return
		case faultThrottle:
			secs := int((d.retry + time.Second - 1) / time.Second)
			rep.header = http.Header{"Retry-After": {strconv.Itoa(secs)}}
			s.fail(rep, http.StatusTooManyRequests, "too_many_requests", "injected fault: rate limited", nil)
			rep.flush(w)
			return
		}
		h(rep, r, d)
		if rep.status == 0 || rep.status == http.StatusOK {
			switch d.kind {
			case faultTruncate:
				rep.body = rep.body[:len(rep.body)/2]
			case faultMalformed:
				rep.body = append([]byte("]"), rep.body...)
			}
		}
		rep.flush(w)
	}
}

// resetConnection closes the client's connection with a TCP RST.
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// Paging tokens: base64url(payload) "." base64url(HMAC-SHA256(key, payload)[:16]).
// The payload holds the position (an index into the append-only stream), the
// end of the time range, the page size, the type filter and a fresh nonce.

type cursor struct {
	pos  uint64
	end  int64 // exclusive end of the time range in ms; 0: none
	size int
	typ  string
}

const tokenVersion = 1

func (s *Server) encodeToken(c cursor) string {
	p := make([]byte, 0, 32+len(c.typ))
	p = append(p, tokenVersion)
	p = binary.BigEndian.AppendUint64(p, c.pos)
	p = binary.BigEndian.AppendUint64(p, uint64(c.end))
	p = binary.BigEndian.AppendUint16(p, uint16(c.size))
	p = binary.BigEndian.AppendUint64(p, s.nonce.Add(1))
	p = append(p, c.typ...)
	m := hmac.New(sha256.New, s.tokenKey)
	m.Write(p)
	sum := m.Sum(nil)[:16]
	return base64.RawURLEncoding.EncodeToString(p) + "." + base64.RawURLEncoding.EncodeToString(sum)
}

var errBadToken = errors.New("invalid pagingToken")

func (s *Server) decodeToken(tok string) (cursor, error) {
	ps, ss, ok := strings.Cut(tok, ".")
	if !ok {
		return cursor{}, fmt.Errorf("%w: not a token issued by this server", errBadToken)
	}
	p, err1 := base64.RawURLEncoding.DecodeString(ps)
	sig, err2 := base64.RawURLEncoding.DecodeString(ss)
	if err1 != nil || err2 != nil {
		return cursor{}, fmt.Errorf("%w: not a token issued by this server", errBadToken)
	}
	m := hmac.New(sha256.New, s.tokenKey)
	m.Write(p)
	if !hmac.Equal(m.Sum(nil)[:16], sig) {
		return cursor{}, fmt.Errorf("%w: signature mismatch (tampered, or issued for another tenant or seed)", errBadToken)
	}
	if len(p) < 27 || p[0] != tokenVersion {
		return cursor{}, fmt.Errorf("%w: unknown token version", errBadToken)
	}
	return cursor{
		pos:  binary.BigEndian.Uint64(p[1:9]),
		end:  int64(binary.BigEndian.Uint64(p[9:17])),
		size: int(binary.BigEndian.Uint16(p[17:19])),
		typ:  string(p[27:]),
	}, nil
}

// list serves a page of the stream (both flavors).
func (s *Server) list(w *reply, r *http.Request, f draw, attributed bool) {
	classic := s.cfg.Flavor == FlavorClassic
	typeParam := "type"
	if classic {
		typeParam = "eventType"
	}
	q := r.URL.Query()
	known := map[string]bool{"startTimestamp": true, "endTimestamp": true, typeParam: true, "pageSize": true, "pagingToken": true}
	for k := range q {
		if !known[k] {
			s.fail(w, http.StatusBadRequest, "invalid_argument", "unknown query parameter "+k, map[string]string{k: "unknown parameter"})
			return
		}
	}
	recs, _ := s.st.snapshot()
	var c cursor
	if q.Has("pagingToken") {
		for k := range q {
			if k != "pagingToken" {
				s.fail(w, http.StatusBadRequest, "invalid_argument", "pagingToken cannot be combined with other arguments (got "+k+")", map[string]string{k: "not allowed with pagingToken"})
				return
			}
		}
		var err error
		c, err = s.decodeToken(q.Get("pagingToken"))
		if err != nil {
			s.fail(w, http.StatusBadRequest, "invalid_paging_token", err.Error(), map[string]string{"pagingToken": "invalid"})
			return
		}
		if c.size < 1 || c.size > s.cfg.PageSizeMax {
			s.fail(w, http.StatusBadRequest, "invalid_paging_token", "invalid pagingToken: page size out of range", map[string]string{"pagingToken": "invalid"})
			return
		}
		// A position beyond the end (a token from before a restart with the
		// same seed and a shorter preload) is caught up: the stream is
		// deterministic, so the events up to it were served already.
		if f.duplicate > 0 {
			c.pos -= min(c.pos, uint64(f.duplicate))
		}
	} else {
		if !q.Has("startTimestamp") && q.Get(typeParam) == "" {
			s.fail(w, http.StatusBadRequest, "invalid_argument", "the first call needs a filter: startTimestamp or "+typeParam, nil)
			return
		}
		var start int64
		var errs = map[string]string{}
		if q.Has("startTimestamp") {
			v, err := parseTimestamp(q.Get("startTimestamp"), classic)
			if err != nil {
				errs["startTimestamp"] = err.Error()
			}
			start = v
		}
		if q.Has("endTimestamp") {
			v, err := parseTimestamp(q.Get("endTimestamp"), classic)
			if err != nil {
				errs["endTimestamp"] = err.Error()
			} else if v <= start {
				errs["endTimestamp"] = "must be after startTimestamp"
			}
			c.end = v
		}
		c.size = s.cfg.PageSizeDefault
		if q.Has("pageSize") {
			n, err := strconv.Atoi(q.Get("pageSize"))
			if err != nil || n < 1 || n > s.cfg.PageSizeMax {
				errs["pageSize"] = fmt.Sprintf("must be an integer from 1 to %d", s.cfg.PageSizeMax)
			}
			c.size = n
		}
		if len(errs) > 0 {
			msg := "invalid arguments:"
			for k, v := range errs {
				msg += " " + k + " " + v + ";"
			}
			s.fail(w, http.StatusBadRequest, "invalid_argument", strings.TrimSuffix(msg, ";"), errs)
			return
		}
		c.typ = q.Get(typeParam)
		c.pos = uint64(firstAtOrAfter(recs, start))
	}
	typ, typOK := uint16(0), true
	if c.typ != "" {
		typ, typOK = s.st.lookupType(c.typ)
	}
	var names []user
	if attributed {
		names = s.st.users
	}
	b := make([]byte, 0, 64+c.size*400)
	if classic {
		b = append(b, `{"events":[`...)
	} else {
		b = append(b, `{"events":[`...)
	}
	i, n := int(c.pos), 0
	if !typOK && i < len(recs) {
		i = len(recs) // no event has this type yet: all seen so far are skipped
	}
	for ; i < len(recs) && n < c.size; i++ {
		rec := &recs[i]
		if c.end != 0 && rec.ms >= c.end {
			break
		}
		if c.typ != "" && rec.typ != typ {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		n++
		if names != nil {
			b = append(b, rec.raw[:len(rec.raw)-1]...)
			b = append(b, `,"username":"`...)
			b = append(b, names[rec.user].name...)
			b = append(b, `"}`...)
		} else {
			b = append(b, rec.raw...)
		}
	}
	c.pos = uint64(i)
	b = append(b, `],"pagingToken":"`...)
	b = append(b, s.encodeToken(c)...)
	b = append(b, `"}`...)
	w.json(http.StatusOK, b)
}

// parseTimestamp reads an ISO-8601 date-time (suite) or milliseconds since
// the epoch (classic) into milliseconds.
func parseTimestamp(v string, classic bool) (int64, error) {
	if classic {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return 0, errors.New("must be milliseconds since the epoch")
		}
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, errors.New("must be an ISO-8601 date-time such as 2024-01-31T12:00:00.000Z")
	}
	return t.UnixMilli(), nil
}

func (s *Server) oneEvent(w *reply, r *http.Request, _ draw) {
	recs, _ := s.st.snapshot()
	i, ok := s.st.find(recs, r.PathValue("locator"))
	if !ok {
		s.fail(w, http.StatusNotFound, "not_found", "no event with locator "+r.PathValue("locator"), nil)
		return
	}
	w.json(http.StatusOK, append([]byte(nil), recs[i].raw...))
}

func (s *Server) requestEvents(w *reply, r *http.Request, _ draw) {
	recs, reqs := s.st.snapshot()
	rq, ok := findRequest(reqs, r.PathValue("locator"))
	if !ok {
		s.fail(w, http.StatusNotFound, "not_found", "no request with locator "+r.PathValue("locator"), nil)
		return
	}
	b := []byte{'['}
	for i := rq.first; i < rq.first+rq.n; i++ {
		if i > rq.first {
			b = append(b, ',')
		}
		b = append(b, recs[i].raw...)
	}
	w.json(http.StatusOK, append(b, ']'))
}
