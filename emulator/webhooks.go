package emulator

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Webhooks: registered endpoints receive every new event of their types as
// the same JSON the stream serves (classic bodies add username and
// transactionId). A failed delivery whose trigger is configured is retried
// (linear: interval×k before retry k; exponential: interval×2^(k-1)), up to
// `attempts` deliveries in all; when they are used up the event is diverted
// (divert: true) and the webhook suspended (suspend: true).

// Defaults of a webhook's failure handling.
const (
	defaultAttempts = 3
	defaultInterval = 1000 // ms
)

var defaultTriggers = []string{"4xx", "5xx", "timeout"}

type endpointJSON struct {
	URL         string              `json:"url"`
	Headers     map[string][]string `json:"headers"`
	SecureSsl   bool                `json:"secureSsl"`
	HmacEnabled bool                `json:"hmacEnabled"`
	Secret      string              `json:"secret"`
	Tag         string              `json:"tag"`
}

type retryJSON struct {
	Type     string `json:"type"`
	Interval int64  `json:"interval"`
	Attempts int    `json:"attempts"`
}

type failureHandlingJSON struct {
	AlertEndpoint endpointJSON `json:"alertEndpoint"`
	Triggers      []string     `json:"triggers"`
	RetryStrategy retryJSON    `json:"retryStrategy"`
	Divert        bool         `json:"divert"`
	Suspend       bool         `json:"suspend"`
}

type webhookJSON struct {
	Locator         string              `json:"locator"`
	Name            string              `json:"name"`
	Enabled         bool                `json:"enabled"`
	Suspended       bool                `json:"suspended"`
	SuspendedAt     string              `json:"suspendedAt"`
	EventTypes      []string            `json:"eventTypes"`
	Endpoint        endpointJSON        `json:"endpoint"`
	FailureHandling failureHandlingJSON `json:"failureHandling"`
}

type divertedJSON struct {
	EventLocator     string `json:"eventLocator"`
	RequestLocator   string `json:"requestLocator"`
	FailureMessage   string `json:"failureMessage"`
	FailureTimestamp string `json:"failureTimestamp"`
	FailureTrigger   string `json:"failureTrigger"`
}

type webhook struct {
	loc         string // immutable copy of cfg.Locator, read without the lock
	mu          sync.Mutex
	cfg         webhookJSON // SuspendedAt kept in suspendedAt
	suspendedAt time.Time
	queue       []int // record indices waiting for delivery
	wake        chan struct{}
	diverted    []*divertedEntry
	deleted     bool
}

type divertedEntry struct {
	idx  int
	resp divertedJSON
}

type webhooks struct {
	s      *Server
	client *http.Client
	mu     sync.Mutex
	hooks  map[string]*webhook
	order  []string
	ids    idGen
	wg     sync.WaitGroup
}

func newWebhooks(s *Server) *webhooks {
	return &webhooks{
		s:      s,
		client: &http.Client{Timeout: s.cfg.WebhookTimeout},
		hooks:  map[string]*webhook{},
		ids:    idGen{rng: newRand(s.cfg.Seed, 0x400c)},
	}
}

func (h *webhooks) close() { h.wg.Wait() }

func (h *webhooks) routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /event/{tenant}/webhooks", h.create)
	mux.HandleFunc("GET /event/{tenant}/webhooks/list", h.list)
	mux.HandleFunc("GET /event/{tenant}/webhooks/{webhook}", h.get)
	mux.HandleFunc("PATCH /event/{tenant}/webhooks/{webhook}", h.update)
	mux.HandleFunc("DELETE /event/{tenant}/webhooks/{webhook}", h.delete)
	mux.HandleFunc("PATCH /event/{tenant}/webhooks/{webhook}/unsuspend", h.unsuspend)
	mux.HandleFunc("GET /event/{tenant}/webhooks/{webhook}/diverted", h.listDiverted)
	mux.HandleFunc("GET /event/{tenant}/webhooks/{webhook}/diverted/{event}", h.getDiverted)
	mux.HandleFunc("DELETE /event/{tenant}/webhooks/{webhook}/diverted/{event}", h.deleteDiverted)
	mux.HandleFunc("POST /event/{tenant}/webhooks/{webhook}/diverted/{event}/resend", h.resend)
}

func (h *webhooks) respond(w http.ResponseWriter, status int, v any) {
	rep := &reply{}
	if v == nil {
		rep.status = status
	} else {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		rep.json(status, b)
	}
	rep.flush(w)
}

func (h *webhooks) fail(w http.ResponseWriter, status int, msg string) {
	rep := &reply{}
	h.s.fail(rep, status, http.StatusText(status), msg, nil)
	rep.flush(w)
}

type createReq struct {
	Name            *string              `json:"name"`
	Enabled         *bool                `json:"enabled"`
	EventTypes      []string             `json:"eventTypes"`
	Endpoint        *endpointJSON        `json:"endpoint"`
	FailureHandling *failureHandlingJSON `json:"failureHandling"`
}

// normalize fills failure-handling defaults and checks the values.
func normalizeFH(fh *failureHandlingJSON) error {
	var errs []error
	rs := &fh.RetryStrategy
	if rs.Type == "" {
		rs.Type = "linear"
	}
	if rs.Type != "linear" && rs.Type != "exponential" {
		errs = append(errs, fmt.Errorf("retryStrategy.type %q: want linear or exponential", rs.Type))
	}
	if rs.Attempts == 0 {
		rs.Attempts = defaultAttempts
	}
	if rs.Attempts < 1 || rs.Attempts > 10 {
		errs = append(errs, fmt.Errorf("retryStrategy.attempts %d: want 1 to 10", rs.Attempts))
	}
	if rs.Interval == 0 {
		rs.Interval = defaultInterval
	}
	if rs.Interval < 0 {
		errs = append(errs, fmt.Errorf("retryStrategy.interval %d: want milliseconds > 0", rs.Interval))
	}
	if len(fh.Triggers) == 0 {
		fh.Triggers = slices.Clone(defaultTriggers)
	}
	for _, t := range fh.Triggers {
		if t == "4xx" || t == "5xx" || t == "timeout" {
			continue
		}
		if n, err := strconv.Atoi(t); err != nil || n < 100 || n > 599 {
			errs = append(errs, fmt.Errorf("trigger %q: want 4xx, 5xx, timeout or an HTTP status code", t))
		}
	}
	if fh.AlertEndpoint.Headers == nil {
		fh.AlertEndpoint.Headers = map[string][]string{}
	}
	return errors.Join(errs...)
}

func defaultFH() failureHandlingJSON {
	fh := failureHandlingJSON{}
	normalizeFH(&fh)
	return fh
}

func (h *webhooks) create(w http.ResponseWriter, r *http.Request) {
	var req createReq
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		h.fail(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	var errs []error
	if req.Name == nil || *req.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if req.Enabled == nil {
		errs = append(errs, errors.New("enabled is required"))
	}
	if req.Endpoint == nil || req.Endpoint.URL == "" {
		errs = append(errs, errors.New("endpoint.url is required"))
	}
	if req.EventTypes == nil {
		errs = append(errs, errors.New("eventTypes is required"))
	}
	fh := defaultFH()
	if req.FailureHandling != nil {
		fh = *req.FailureHandling
		if err := normalizeFH(&fh); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	ep := *req.Endpoint
	if ep.Headers == nil {
		ep.Headers = map[string][]string{}
	}
	h.mu.Lock()
	loc := ulid(h.ids.next(time.Now().UnixMilli()))
	wh := &webhook{
		loc:  loc,
		cfg:  webhookJSON{Locator: loc, Name: *req.Name, Enabled: *req.Enabled, EventTypes: req.EventTypes, Endpoint: ep, FailureHandling: fh},
		wake: make(chan struct{}, 1),
	}
	h.hooks[loc] = wh
	h.order = append(h.order, loc)
	h.mu.Unlock()
	h.wg.Add(1)
	go h.worker(wh)
	h.respond(w, http.StatusOK, wh.view())
}

// view returns the webhook's API form; the secret is masked.
func (wh *webhook) view() webhookJSON {
	wh.mu.Lock()
	defer wh.mu.Unlock()
	v := wh.cfg
	v.EventTypes = slices.Clone(v.EventTypes)
	if v.Endpoint.Secret != "" {
		v.Endpoint.Secret = "********"
	}
	v.SuspendedAt = isoMS(0)
	if v.Suspended {
		v.SuspendedAt = isoMS(wh.suspendedAt.UnixMilli())
	}
	return v
}

func (h *webhooks) lookup(w http.ResponseWriter, r *http.Request) *webhook {
	h.mu.Lock()
	wh := h.hooks[r.PathValue("webhook")]
	h.mu.Unlock()
	if wh == nil {
		h.fail(w, http.StatusNotFound, "no webhook with locator "+r.PathValue("webhook"))
	}
	return wh
}

func (h *webhooks) get(w http.ResponseWriter, r *http.Request) {
	if wh := h.lookup(w, r); wh != nil {
		h.respond(w, http.StatusOK, wh.view())
	}
}

func (h *webhooks) list(w http.ResponseWriter, r *http.Request) {
	offset, count := pageArgs(r)
	h.mu.Lock()
	var items []webhookJSON
	for i, loc := range h.order {
		if i >= offset && len(items) < count {
			items = append(items, h.hooks[loc].view())
		}
	}
	total := len(h.order)
	h.mu.Unlock()
	if items == nil {
		items = []webhookJSON{}
	}
	h.respond(w, http.StatusOK, map[string]any{"listCompleted": offset+len(items) >= total, "items": items})
}

func pageArgs(r *http.Request) (offset, count int) {
	offset, _ = strconv.Atoi(r.URL.Query().Get("offset"))
	count, _ = strconv.Atoi(r.URL.Query().Get("count"))
	if offset < 0 {
		offset = 0
	}
	if count <= 0 {
		count = 100
	}
	return offset, count
}

type updateEndpointReq struct {
	URL           string              `json:"url"`
	AddHeaders    map[string][]string `json:"addHeaders"`
	RemoveHeaders []string            `json:"removeHeaders"`
	SecureSsl     *bool               `json:"secureSsl"`
	HmacEnabled   *bool               `json:"hmacEnabled"`
	Secret        *string             `json:"secret"`
	Tag           *string             `json:"tag"`
}

func (u *updateEndpointReq) apply(ep *endpointJSON) {
	if u.URL != "" {
		ep.URL = u.URL
	}
	if ep.Headers == nil {
		ep.Headers = map[string][]string{}
	}
	for k, v := range u.AddHeaders {
		ep.Headers[k] = v
	}
	for _, k := range u.RemoveHeaders {
		delete(ep.Headers, k)
	}
	if u.SecureSsl != nil {
		ep.SecureSsl = *u.SecureSsl
	}
	if u.HmacEnabled != nil {
		ep.HmacEnabled = *u.HmacEnabled
	}
	if u.Secret != nil {
		ep.Secret = *u.Secret
	}
	if u.Tag != nil {
		ep.Tag = *u.Tag
	}
}

type updateFHReq struct {
	AlertEndpoint       *updateEndpointReq `json:"alertEndpoint"`
	RemoveAlertEndpoint bool               `json:"removeAlertEndpoint"`
	AddTriggers         []string           `json:"addTriggers"`
	RemoveTriggers      []string           `json:"removeTriggers"`
	RetryStrategy       *retryJSON         `json:"retryStrategy"`
	RemoveRetryStrategy bool               `json:"removeRetryStrategy"`
	Divert              *bool              `json:"divert"`
	Suspend             *bool              `json:"suspend"`
}

type updateReq struct {
	Name                  *string            `json:"name"`
	Enabled               *bool              `json:"enabled"`
	Endpoint              *updateEndpointReq `json:"endpoint"`
	FailureHandling       *updateFHReq       `json:"failureHandling"`
	RemoveFailureHandling bool               `json:"removeFailureHandling"`
	AddEventTypes         []string           `json:"addEventTypes"`
	RemoveEventTypes      []string           `json:"removeEventTypes"`
}

// update applies an UpdateWebhookRequest: set fields replace, add/remove
// lists edit, remove* flags restore defaults.
func (h *webhooks) update(w http.ResponseWriter, r *http.Request) {
	wh := h.lookup(w, r)
	if wh == nil {
		return
	}
	var req updateReq
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		h.fail(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return
	}
	wh.mu.Lock()
	cfg := wh.cfg
	cfg.EventTypes = slices.Clone(cfg.EventTypes)
	cfg.Endpoint.Headers = maps.Clone(cfg.Endpoint.Headers)
	fh := cfg.FailureHandling
	fh.Triggers = slices.Clone(fh.Triggers)
	wh.mu.Unlock()
	if req.Name != nil && *req.Name != "" {
		cfg.Name = *req.Name
	}
	if req.Enabled != nil {
		cfg.Enabled = *req.Enabled
	}
	if req.Endpoint != nil {
		req.Endpoint.apply(&cfg.Endpoint)
	}
	if req.RemoveFailureHandling {
		fh = defaultFH()
	}
	if u := req.FailureHandling; u != nil {
		if u.RemoveAlertEndpoint {
			fh.AlertEndpoint = endpointJSON{}
		} else if u.AlertEndpoint != nil {
			u.AlertEndpoint.apply(&fh.AlertEndpoint)
		}
		for _, tr := range u.AddTriggers {
			if !slices.Contains(fh.Triggers, tr) {
				fh.Triggers = append(fh.Triggers, tr)
			}
		}
		fh.Triggers = slices.DeleteFunc(fh.Triggers, func(tr string) bool { return slices.Contains(u.RemoveTriggers, tr) })
		if u.RemoveRetryStrategy {
			fh.RetryStrategy = retryJSON{}
		} else if u.RetryStrategy != nil {
			fh.RetryStrategy = *u.RetryStrategy
		}
		if u.Divert != nil {
			fh.Divert = *u.Divert
		}
		if u.Suspend != nil {
			fh.Suspend = *u.Suspend
		}
	}
	if err := normalizeFH(&fh); err != nil {
		h.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	cfg.FailureHandling = fh
	for _, t := range req.AddEventTypes {
		if !slices.Contains(cfg.EventTypes, t) {
			cfg.EventTypes = append(cfg.EventTypes, t)
		}
	}
	cfg.EventTypes = slices.DeleteFunc(cfg.EventTypes, func(t string) bool { return slices.Contains(req.RemoveEventTypes, t) })
	wh.mu.Lock()
	cfg.Suspended = wh.cfg.Suspended
	wh.cfg = cfg
	wh.mu.Unlock()
	h.respond(w, http.StatusOK, wh.view())
}

func (h *webhooks) delete(w http.ResponseWriter, r *http.Request) {
	wh := h.lookup(w, r)
	if wh == nil {
		return
	}
	h.mu.Lock()
	delete(h.hooks, wh.loc)
	h.order = slices.DeleteFunc(h.order, func(l string) bool { return l == wh.loc })
	h.mu.Unlock()
	wh.mu.Lock()
	wh.deleted = true
	wh.mu.Unlock()
	wh.signal()
	h.respond(w, http.StatusNoContent, nil)
}

func (h *webhooks) unsuspend(w http.ResponseWriter, r *http.Request) {
	wh := h.lookup(w, r)
	if wh == nil {
		return
	}
	wh.mu.Lock()
	wh.cfg.Suspended = false
	wh.mu.Unlock()
	wh.signal()
	h.respond(w, http.StatusNoContent, nil)
}

func (wh *webhook) signal() {
	select {
	case wh.wake <- struct{}{}:
	default:
	}
}

func (h *webhooks) findDiverted(w http.ResponseWriter, r *http.Request) (*webhook, int) {
	wh := h.lookup(w, r)
	if wh == nil {
		return nil, -1
	}
	loc := r.PathValue("event")
	wh.mu.Lock()
	defer wh.mu.Unlock()
	for i, d := range wh.diverted {
		if d.resp.EventLocator == loc {
			return wh, i
		}
	}
	h.fail(w, http.StatusNotFound, "no diverted event "+loc+" for webhook "+wh.loc)
	return nil, -1
}

func (h *webhooks) listDiverted(w http.ResponseWriter, r *http.Request) {
	wh := h.lookup(w, r)
	if wh == nil {
		return
	}
	offset, count := pageArgs(r)
	wh.mu.Lock()
	out := []divertedJSON{}
	for i, d := range wh.diverted {
		if i >= offset && len(out) < count {
			out = append(out, d.resp)
		}
	}
	wh.mu.Unlock()
	h.respond(w, http.StatusOK, out)
}

func (h *webhooks) getDiverted(w http.ResponseWriter, r *http.Request) {
	wh, i := h.findDiverted(w, r)
	if wh == nil {
		return
	}
	wh.mu.Lock()
	d := wh.diverted[i].resp
	wh.mu.Unlock()
	h.respond(w, http.StatusOK, d)
}

func (h *webhooks) deleteDiverted(w http.ResponseWriter, r *http.Request) {
	wh, i := h.findDiverted(w, r)
	if wh == nil {
		return
	}
	wh.mu.Lock()
	wh.diverted = slices.Delete(wh.diverted, i, i+1)
	wh.mu.Unlock()
	h.respond(w, http.StatusOK, struct{}{})
}

// resend delivers a diverted event once, now; on success it is no longer diverted.
func (h *webhooks) resend(w http.ResponseWriter, r *http.Request) {
	wh, i := h.findDiverted(w, r)
	if wh == nil {
		return
	}
	wh.mu.Lock()
	d := wh.diverted[i]
	wh.mu.Unlock()
	trigger, msg := h.deliver(r.Context(), wh, d.idx)
	wh.mu.Lock()
	defer wh.mu.Unlock()
	j := slices.Index(wh.diverted, d)
	if trigger == "" {
		if j >= 0 {
			wh.diverted = slices.Delete(wh.diverted, j, j+1)
		}
		h.respond(w, http.StatusOK, struct{}{})
		return
	}
	if j >= 0 {
		d.resp.FailureMessage, d.resp.FailureTrigger = msg, trigger
		d.resp.FailureTimestamp = isoMS(time.Now().UnixMilli())
	}
	h.fail(w, http.StatusBadGateway, "resend failed: "+msg)
}

// notify queues records [from, to) for every enabled webhook of their types.
func (h *webhooks) notify(from, to int) {
	h.mu.Lock()
	hooks := make([]*webhook, 0, len(h.order))
	for _, loc := range h.order {
		hooks = append(hooks, h.hooks[loc])
	}
	h.mu.Unlock()
	if len(hooks) == 0 {
		return
	}
	recs, _ := h.s.st.snapshot()
	h.s.st.mu.RLock()
	types := h.s.st.types
	h.s.st.mu.RUnlock()
	for _, wh := range hooks {
		wh.mu.Lock()
		if wh.cfg.Enabled {
			for i := from; i < to; i++ {
				if len(wh.cfg.EventTypes) == 0 || slices.Contains(wh.cfg.EventTypes, types[recs[i].typ]) || slices.Contains(wh.cfg.EventTypes, "*") {
					wh.queue = append(wh.queue, i)
				}
			}
		}
		wh.mu.Unlock()
		wh.signal()
	}
}

// worker delivers a webhook's queue in order until the server closes or the
// webhook is deleted; it pauses while the webhook is suspended.
func (h *webhooks) worker(wh *webhook) {
	defer h.wg.Done()
	ctx := h.s.bgCtx
	for {
		wh.mu.Lock()
		deleted := wh.deleted
		var idx = -1
		if !wh.cfg.Suspended && len(wh.queue) > 0 {
			idx = wh.queue[0]
			wh.queue = wh.queue[1:]
		}
		fh := wh.cfg.FailureHandling
		wh.mu.Unlock()
		if deleted {
			return
		}
		if idx < 0 {
			select {
			case <-ctx.Done():
				return
			case <-wh.wake:
			}
			continue
		}
		var trigger, msg string
		for attempt := 1; ; attempt++ {
			trigger, msg = h.deliver(ctx, wh, idx)
			if trigger == "" || !matches(fh.Triggers, trigger) || attempt >= fh.RetryStrategy.Attempts {
				break
			}
			wait := time.Duration(fh.RetryStrategy.Interval) * time.Millisecond
			if fh.RetryStrategy.Type == "exponential" {
				wait <<= attempt - 1
			} else {
				wait *= time.Duration(attempt)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if trigger == "" {
			continue
		}
		if !matches(fh.Triggers, trigger) {
			h.s.log.Warn("webhook delivery failed; trigger not configured, event dropped", "webhook", wh.loc, "trigger", trigger, "err", msg)
			continue
		}
		h.s.log.Warn("webhook delivery failed after retries", "webhook", wh.loc, "trigger", trigger, "err", msg, "divert", fh.Divert, "suspend", fh.Suspend)
		recs, reqs := h.s.st.snapshot()
		wh.mu.Lock()
		if fh.Divert {
			d := &divertedEntry{idx: idx, resp: divertedJSON{
				EventLocator:     h.s.st.locatorOf(&recs[idx]),
				RequestLocator:   reqs[recs[idx].req].id,
				FailureMessage:   msg,
				FailureTimestamp: isoMS(time.Now().UnixMilli()),
				FailureTrigger:   trigger,
			}}
			wh.diverted = append(wh.diverted, d)
		}
		if fh.Suspend {
			wh.cfg.Suspended = true
			wh.suspendedAt = time.Now()
		}
		wh.mu.Unlock()
		if fh.AlertEndpoint.URL != "" {
			h.alert(ctx, wh, fh.AlertEndpoint, h.s.st.locatorOf(&recs[idx]), trigger, msg, fh)
		}
	}
}

// alertJSON is what the alert endpoint receives when a delivery has failed
// for good (the vendor does not publish this body; this is the emulator's).
type alertJSON struct {
	WebhookLocator   string `json:"webhookLocator"`
	EventLocator     string `json:"eventLocator"`
	FailureTrigger   string `json:"failureTrigger"`
	FailureMessage   string `json:"failureMessage"`
	FailureTimestamp string `json:"failureTimestamp"`
	Diverted         bool   `json:"diverted"`
	Suspended        bool   `json:"suspended"`
}

// newRequest builds a POST of the JSON body to ep, with ep's headers and, when
// ep has a secret, the HMAC-SHA256 signature header.
func (h *webhooks) newRequest(ctx context.Context, ep endpointJSON, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, vs := range ep.Headers {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	if ep.Secret != "" {
		m := hmac.New(sha256.New, []byte(ep.Secret))
		m.Write(body)
		req.Header.Set(h.s.cfg.SignatureHeader, "sha256="+hex.EncodeToString(m.Sum(nil)))
	}
	return req, nil
}

// alert posts one alertJSON to ep, once; a failing alert endpoint is logged.
func (h *webhooks) alert(ctx context.Context, wh *webhook, ep endpointJSON, eventLoc, trigger, msg string, fh failureHandlingJSON) {
	body, err := json.Marshal(alertJSON{WebhookLocator: wh.loc, EventLocator: eventLoc, FailureTrigger: trigger, FailureMessage: msg,
		FailureTimestamp: isoMS(time.Now().UnixMilli()), Diverted: fh.Divert, Suspended: fh.Suspend})
	if err != nil {
		panic(err)
	}
	req, err := h.newRequest(ctx, ep, body)
	if err != nil {
		h.s.log.Warn("webhook alert", "webhook", wh.loc, "err", err)
		return
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.s.log.Warn("webhook alert", "webhook", wh.loc, "err", err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		h.s.log.Warn("webhook alert", "webhook", wh.loc, "status", resp.Status)
	}
}

// matches reports whether trigger (a status code or "timeout") is configured.
func matches(triggers []string, trigger string) bool {
	for _, t := range triggers {
		if t == trigger || (len(trigger) == 3 && len(t) == 3 && t[1:] == "xx" && t[0] == trigger[0]) {
			return true
		}
	}
	return false
}

// deliver posts one event; it returns "" on success, else the failure's
// trigger (the status code, or "timeout" for timeouts and connection
// errors) and a message.
func (h *webhooks) deliver(ctx context.Context, wh *webhook, idx int) (trigger, msg string) {
	recs, reqs := h.s.st.snapshot()
	rec := &recs[idx]
	body := rec.raw
	if h.s.cfg.Flavor == FlavorClassic {
		body = make([]byte, 0, len(rec.raw)+100)
		body = append(body, rec.raw[:len(rec.raw)-1]...)
		body = append(body, `,"username":"`...)
		body = append(body, h.s.st.users[rec.user].name...)
		body = append(body, `","transactionId":"`...)
		body = append(body, reqs[rec.req].id...)
		body = append(body, `"}`...)
	}
	wh.mu.Lock()
	ep := wh.cfg.Endpoint
	wh.mu.Unlock()
	req, err := h.newRequest(ctx, ep, body)
	if err != nil {
		return "timeout", "build request: " + err.Error()
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout", "timeout: " + err.Error()
		}
		return "timeout", "connection error: " + err.Error()
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return "", ""
	}
	return strconv.Itoa(resp.StatusCode), "endpoint answered " + resp.Status
}
