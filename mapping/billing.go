package mapping

import (
	"encoding/json"
	"strings"
	"time"
	"unsafe"

	"github.com/tributary-cdc/tributary/internal/jsonscan"
)

// billingFacts are the facts of a billing event's payload that get columns
// of their own: what the suite's invoice events carry
// (InvoiceGeneratedEventData, InvoiceSettledEventData, InvoiceAutopayData in
// the OpenAPI subset). The other billing events (payments, delinquencies,
// write-offs) carry only locators and policy lists, which have their
// columns already; amounts, currency and due times exist only in the
// billing look-ups, not in events.
type billingFacts struct {
	invoiceType string
	generate    *time.Time
	autopay     *time.Time
	generateMs  *int64
	autopayMs   *int64
	times       chunks[time.Time] // where the pointers above point: a batch's facts share a few allocations
	millis      chunks[int64]
}

// chunks hands out pointers to values stored in shared chunks of 256. A
// chunk is never appended to past its capacity, so every pointer keeps
// pointing at its own value.
type chunks[T any] struct{ buf []T }

func (c *chunks[T]) put(v T) *T {
	if len(c.buf) == cap(c.buf) {
		c.buf = make([]T, 0, 256)
	}
	c.buf = append(c.buf, v)
	return &c.buf[len(c.buf)-1]
}

// carriesBillingFacts reports whether events of eventType may carry
// billingFacts: only those payloads are read a second time.
func carriesBillingFacts(eventType string) bool {
	return strings.HasPrefix(eventType, "billing.invoice.")
}

// read fills f from data, a payload of eventType, reporting a member of the
// wrong type or a time that does not parse through p.errorf; f is left
// empty for other types and for data that is not a JSON object (p.parse
// reported that already). trusted says the source validated data as JSON
// already (Options.TrustData), which is then not validated again.
func (f *billingFacts) read(eventType, data string, trusted bool, p *payload) {
	f.invoiceType, f.generate, f.autopay, f.generateMs, f.autopayMs = "", nil, nil, nil, nil
	if !carriesBillingFacts(eventType) {
		return
	}
	trimmed := jsonscan.TrimSpace(data)
	// json.Valid over the string's bytes, without copying them.
	if trimmed == "" || trimmed[0] != '{' || !trusted && !json.Valid(unsafe.Slice(unsafe.StringData(trimmed), len(trimmed))) {
		return
	}
	jsonscan.EachMember(trimmed, func(key, val string) {
		switch key {
		case "invoiceType":
			f.invoiceType = p.str(key, val)
		case "generateTime":
			f.generate, f.generateMs = f.time(p, key, val)
		case "autopayTime":
			f.autopay, f.autopayMs = f.time(p, key, val)
		}
	})
}

// time reads a date-time member (RFC 3339) as UTC milliseconds and as epoch
// milliseconds; null reads as nil, and so does a value that is not a
// date-time, which p records.
func (f *billingFacts) time(p *payload, key, val string) (*time.Time, *int64) {
	s := p.str(key, val)
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		p.errorf("data.%s is %q, not an RFC 3339 date-time", key, s)
		return nil, nil
	}
	t = millis(t)
	return f.times.put(t), f.millis.put(t.UnixMilli())
}

func (v *Values) nullTime(t *time.Time) { v.NullTimes = append(v.NullTimes, t) }
func (v *Values) nullInt64(n *int64)    { v.NullInt64s = append(v.NullInt64s, n) }

// billingColumns are the events columns of billingFacts, in column order.
func billingColumns() []Column {
	return []Column{
		{"invoice_type", LowString, "billing.invoice.* events: data.invoiceType, normal or aggregate (an aggregate invoice bills several policies at once); empty for other events."},
		{"generate_time", NullableTime, "billing.invoice.generate: data.generateTime, when the invoice was generated; NULL for other events."},
		{"generate_time_unix_ms", NullableInt64, "generate_time as milliseconds since 1970-01-01 UTC (exact on every server); NULL when generate_time is."},
		{"autopay_time", NullableTime, "billing.invoice.autopay and autopayfailed: data.autopayTime, when autopay ran; NULL for other events."},
		{"autopay_time_unix_ms", NullableInt64, "autopay_time as milliseconds since 1970-01-01 UTC (exact on every server); NULL when autopay_time is."},
	}
}
