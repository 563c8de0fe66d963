package mapping

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/tributary-cdc/tributary/internal/jsonscan"
	"github.com/tributary-cdc/tributary/source"
)

// Options are what Map needs beyond the events themselves.
type Options struct {
	// Pipeline is the pipeline's name, stored in every row's _source.
	Pipeline string
	// FullPolicyLocators holds, by event locator, the complete policy list
	// that enrichment fetched for events whose payload list was incomplete
	// (listCompleted false). An event found here gets that list, marked complete.
	FullPolicyLocators map[string][]string
	// IngestedAt is stored in every row's _ingested_at (the zero time stands
	// for the Unix epoch). It is the only wall-clock value of a row.
	IngestedAt time.Time
	// Position is where the source stood after the batch (its Batch
	// Position), stored with each reject for replay.
	Position string
	// TrustData says that every event's Data without Reject is valid JSON
	// and never changes, as source.Event promises for the project's
	// sources: Map then neither validates it again nor copies it (the data
	// column shares its memory). Without it (events built by hand) Map
	// checks the JSON and copies.
	TrustData bool
}

// Stats counts what one Map call saw.
type Stats struct {
	Events      int            // events mapped (every event of the batch)
	Unknown     int            // events whose type the mapping does not know (KnownType false)
	ParseErrors int            // events whose data could not be fully read (parse_error set)
	ByClass     map[string]int // events per TypeClass
	Rejected    map[string]int // events quarantined (source.Event.Reject set), per RejectKind
}

// Map appends the rows of every event of b to rows: one events row per event,
// one event_policies row per policy the event concerns, and one
// policy_status_changes row per status a policy.status.update added or
// removed. Events of unknown types and payloads Map cannot read are kept,
// with their raw data and the reason in parse_error, and counted in the
// returned Stats; an event the source could not read (source.Event.Reject)
// gets a row in the rejects table instead. Map never drops an event and
// never panics. Map is pure: the
// same batch and options give the same rows.
//
// Values follow each table's Columns with the Go types schema.go documents;
// times are UTC with millisecond precision. A table gets an entry in
// rows.ByTable only when it has rows.
func Map(b source.Batch, opts Options, rows *Rows) Stats {
	st := Stats{ByClass: map[string]int{}, Rejected: map[string]int{}}
	if len(b.Events) == 0 {
		return st
	}
	ingested := millis(opts.IngestedAt)
	if opts.IngestedAt.IsZero() {
		ingested = time.Unix(0, 0).UTC()
	}
	ar := &rows.arena

	evt := rows.Table(defaultTables[0])
	evt.grow(len(b.Events))
	ev := evt.Values
	ept := rows.Table(defaultTables[1])
	ep := ept.Values
	sct := rows.Table(defaultTables[2])
	sc := sct.Values
	rjt := rows.Table(defaultTables[3])
	defer func() {
		for _, t := range []*TableRows{evt, ept, sct, rjt} {
			if t.n == 0 {
				delete(rows.ByTable, t.Table.Name)
			}
		}
	}()
	var p payload
	var bf billingFacts
	// A batch holds few distinct types: classify each once.
	type typeInfo struct {
		class string
		known bool
	}
	types := map[string]typeInfo{}
	for i := range b.Events {
		e := &b.Events[i]
		st.Events++
		if e.Reject != "" {
			mapReject(rjt, e, opts, ingested)
			st.Rejected[RejectKind(e.Reject)]++
			continue
		}
		p.reset(ar)
		var dataStr string
		if opts.TrustData {
			dataStr = unsafe.String(unsafe.SliceData(e.Data), len(e.Data))
		} else {
			dataStr = string(e.Data)
		}
		p.parse(e.Type, dataStr, opts.TrustData)
		bf.read(e.Type, dataStr, opts.TrustData, &p)

		ti, seen := types[e.Type]
		if !seen {
			ti = typeInfo{TypeClass(e.Type), KnownType(e.Type)}
			types[e.Type] = ti
		}
		class, known := ti.class, ti.known
		st.ByClass[class]++
		if !known {
			st.Unknown++
		}
		if len(p.errs) > 0 {
			st.ParseErrors++
		}

		// The policy list: payload items (or the enriched list) and the
		// singular policy locator.
		complete := true
		list := ar.take(len(p.listItems) + 1)
		if full, ok := opts.FullPolicyLocators[e.Locator]; ok && full != nil {
			list = appendUnique(list, full...)
		} else if p.hasList && !p.listComplete {
			complete = false
		}
		list = appendUnique(list, p.listItems...)
		if pl := p.named[idxPolicy]; pl != "" {
			list = appendUnique(list, pl)
		}

		ts := millis(e.Timestamp)
		tsMs := ts.UnixMilli()
		if e.Timestamp.IsZero() {
			tsMs = 0 // stored as the epoch, as the sink stores a zero time
		}
		version := e.Seq&(1<<63-1)<<1 | b2u(complete)

		ev[evLocator].str(e.Locator)
		ev[evRequestID].str(e.RequestID)
		ev[evUserLocator].str(e.UserLocator)
		ev[evUsername].str(e.Username)
		ev[evTransactionID].str(e.TransactionID)
		ev[evTenant].str(e.Tenant)
		ev[evType].str(e.Type)
		ev[evTypeClass].str(class)
		ev[evKnownType].bool(known)
		ev[evTimestamp].time(ts)
		ev[evFlavor].str(e.Flavor)
		ev[evData].str(dataStr)
		ev[evParseError].str(strings.Join(p.errs, "; "))
		for j := range namedLocators {
			ev[evNamed+j].str(p.named[j])
		}
		ev[evReferenceType].str(p.referenceType)
		keys, values := p.locatorColumns()
		ev[evLocatorKeys].list(keys)
		ev[evLocatorValues].list(values)
		ev[evPolicyLocators].list(list)
		ev[evPolicyLocatorsComplete].bool(complete)
		ev[evNewStatuses].list(p.newStatuses)
		ev[evRemovedStatuses].list(p.removedStatuses)
		ev[evCancellationName].str(p.cancellationName)
		ev[evReminderName].str(p.reminderName)
		ev[evSource].str(opts.Pipeline)
		ev[evPosition].str(position(e))
		ev[evVersion].uint64(version)
		ev[evIngestedAt].time(ingested)
		ev[evTimestampUnixMs].int64(tsMs)
		ev[evActor].str(actor(e))
		ev[evInvoiceType].str(bf.invoiceType)
		ev[evGenerateTime].nullTime(bf.generate)
		ev[evGenerateTimeUnixMs].nullInt64(bf.generateMs)
		ev[evAutopayTime].nullTime(bf.autopay)
		ev[evAutopayTimeUnixMs].nullInt64(bf.autopayMs)
		evt.n++

		if len(list) > 0 && ept.n == 0 {
			// Room for one policy per remaining event, taken when the
			// batch's first policy shows up: no growing copies for the
			// usual batch, nothing for a batch without policies.
			ept.grow(len(b.Events) - i + len(list) - 1)
		}
		for _, pol := range list {
			ep[epTenant].str(e.Tenant)
			ep[epPolicyLocator].str(pol)
			ep[epEventLocator].str(e.Locator)
			ep[epType].str(e.Type)
			ep[epTypeClass].str(class)
			ep[epTimestamp].time(ts)
			ep[epFlavor].str(e.Flavor)
			ep[epListComplete].bool(complete)
			ep[epSource].str(opts.Pipeline)
			ep[epVersion].uint64(version)
			ep[epIngestedAt].time(ingested)
			ep[epTimestampUnixMs].int64(tsMs)
			ept.n++
		}

		if pl := p.named[idxPolicy]; pl != "" {
			add := func(statuses []string, change string, listComplete bool) {
				for _, s := range statuses {
					sc[scTenant].str(e.Tenant)
					sc[scPolicyLocator].str(pl)
					sc[scEventLocator].str(e.Locator)
					sc[scStatus].str(s)
					sc[scChange].str(change)
					sc[scTimestamp].time(ts)
					sc[scType].str(e.Type)
					sc[scListComplete].bool(listComplete)
					sc[scSource].str(opts.Pipeline)
					sc[scVersion].uint64(version)
					sc[scIngestedAt].time(ingested)
					sc[scTimestampUnixMs].int64(tsMs)
					sct.n++
				}
			}
			add(p.newStatuses, ChangeAdded, p.newComplete)
			add(p.removedStatuses, ChangeRemoved, p.removedComplete)
		}
	}
	return st
}

// defaultTables are DefaultSchema's tables, in the order Map fills them.
var defaultTables = DefaultSchema().Tables

func (v *Values) str(s string)     { v.Strings = append(v.Strings, s) }
func (v *Values) bool(b bool)      { v.Bools = append(v.Bools, b) }
func (v *Values) time(t time.Time) { v.Times = append(v.Times, t) }
func (v *Values) uint64(n uint64)  { v.UInt64s = append(v.UInt64s, n) }
func (v *Values) list(l []string)  { v.Lists = append(v.Lists, l) }
func (v *Values) int64(n int64)    { v.Int64s = append(v.Int64s, n) }

// actor is who caused e: the suite's user locator or the classic username.
func actor(e *source.Event) string {
	if e.UserLocator != "" {
		return e.UserLocator
	}
	return e.Username
}

// grow makes room for n more rows in every column.
func (t *TableRows) grow(n int) {
	for i, c := range t.Table.Columns {
		v := &t.Values[i]
		switch c.Type {
		case String, LowString:
			v.Strings = slices.Grow(v.Strings, n)
		case Time:
			v.Times = slices.Grow(v.Times, n)
		case UInt64:
			v.UInt64s = slices.Grow(v.UInt64s, n)
		case UInt32:
			v.UInt32s = slices.Grow(v.UInt32s, n)
		case Bool:
			v.Bools = slices.Grow(v.Bools, n)
		case ArrayString, ArrayLowString:
			v.Lists = slices.Grow(v.Lists, n)
		case NullableString:
			v.NullStrings = slices.Grow(v.NullStrings, n)
		case NullableTime:
			v.NullTimes = slices.Grow(v.NullTimes, n)
		case Int64:
			v.Int64s = slices.Grow(v.Int64s, n)
		case NullableInt64:
			v.NullInt64s = slices.Grow(v.NullInt64s, n)
		}
	}
}

// arena hands out small string slices carved from larger chunks, which it
// keeps for the rows' lifetime (Rows.Reset hands them out again). Each
// slice's capacity is capped, so appending past it reallocates instead of
// writing into a neighbour: the slices stay independent.
type arena struct {
	chunks [][]string // every chunk, in the order handed out
	next   int        // chunks[:next] are (being) handed out
	buf    []string   // what is left of chunks[next-1]
}

func (a *arena) take(n int) []string {
	if n > 64 {
		return make([]string, 0, n)
	}
	if len(a.buf) < n {
		if a.next == len(a.chunks) {
			a.chunks = append(a.chunks, make([]string, 1024))
		}
		a.buf = a.chunks[a.next]
		a.next++
	}
	s := a.buf[:0:n]
	a.buf = a.buf[n:]
	return s
}

// reset clears the chunks handed out (so they hold on to nothing) and
// starts handing them out again.
func (a *arena) reset() {
	for _, c := range a.chunks[:a.next] {
		clear(c)
	}
	a.next, a.buf = 0, nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// millis returns t in UTC truncated to the millisecond.
func millis(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// position renders the event's Seq for _position.
func position(e *source.Event) string {
	if e.Flavor == source.FlavorPostgres {
		return fmt.Sprintf("%X/%X", uint32(e.Seq>>32), uint32(e.Seq))
	}
	return strconv.FormatUint(e.Seq, 10)
}

// appendUnique appends the non-empty values of vs that dst lacks, in order.
// Payload lists hold at most five items, where a linear search is cheapest;
// long enriched lists use a set.
func appendUnique(dst []string, vs ...string) []string {
	if len(dst)+len(vs) > 32 {
		seen := make(map[string]struct{}, len(dst)+len(vs))
		for _, s := range dst {
			seen[s] = struct{}{}
		}
		for _, v := range vs {
			if _, dup := seen[v]; v == "" || dup {
				continue
			}
			seen[v] = struct{}{}
			dst = append(dst, v)
		}
		return dst
	}
	for _, v := range vs {
		if v != "" && !contains(dst, v) {
			dst = append(dst, v)
		}
	}
	return dst
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// payload is what Map reads from one event's data.
type payload struct {
	named            [len(namedLocators)]string // by namedLocators index
	referenceType    string
	entityLocator    string
	bareLocator      string // data.locator
	cancellationName string
	reminderName     string
	locKeys          []string // every top-level *Locator string member
	locVals          []string
	hasList          bool
	listComplete     bool
	listItems        []string
	newStatuses      []string
	newComplete      bool
	removedStatuses  []string
	removedComplete  bool
	errs             []string
	ar               *arena
}

// reset empties p for the next event; its slices come from ar, since the rows
// keep them.
func (p *payload) reset(ar *arena) { *p = payload{ar: ar} }

// namedIndex finds a key's namedLocators index; -1 when it has none.
var namedIndex = func() map[string]int {
	m := make(map[string]int, len(namedLocators))
	for i, n := range namedLocators {
		m[n.key] = i
	}
	return m
}()

const (
	idxPolicy      = 0
	idxQuote       = 1
	idxTransaction = 2
	idxInvoice     = 3
	idxPayment     = 4
	idxAccount     = 6
	idxFnol        = 15
)

func (p *payload) errorf(format string, args ...any) {
	if len(p.errs) < 8 {
		p.errs = append(p.errs, fmt.Sprintf(format, args...))
	}
}

// parse reads data, recording in p.errs every way it departs from what the
// event types define. valid says the source already checked the JSON.
func (p *payload) parse(eventType, data string, valid bool) {
	trimmed := jsonscan.TrimSpace(data)
	switch {
	case trimmed == "":
		p.errorf("data is empty")
		return
	case !valid && !json.Valid([]byte(trimmed)):
		p.errorf("data is not valid JSON")
		return
	case trimmed[0] != '{':
		p.errorf("data is %s, not an object", jsonscan.Kind(trimmed))
		return
	}
	jsonscan.EachMember(trimmed, p.member)
	p.applyInferred(eventType)
}

func (p *payload) member(key, val string) {
	switch key {
	case "policyLocators":
		p.hasList = true
		p.listItems, p.listComplete = p.list(key, val, p.ar.take(6))
		return
	case "newStatuses":
		p.newStatuses, p.newComplete = p.list(key, val, p.ar.take(3))
		return
	case "removedStatuses":
		p.removedStatuses, p.removedComplete = p.list(key, val, p.ar.take(3))
		return
	case "cancellationName":
		p.cancellationName = p.str(key, val)
		return
	case "reminderName":
		p.reminderName = p.str(key, val)
		return
	case "referenceType":
		p.referenceType = p.str(key, val)
		return
	}
	if key != "locator" && !strings.HasSuffix(key, "Locator") {
		return
	}
	idx, named := namedIndex[key]
	if !named && val[0] != '"' {
		return // an unnamed *Locator member that is not a string: not ours to judge
	}
	s := p.str(key, val)
	if val[0] == '"' {
		p.addLocator(key, s)
	}
	switch {
	case named:
		p.named[idx] = s
	case key == "entityLocator":
		p.entityLocator = s
	case key == "locator":
		p.bareLocator = s
	}
}

// addLocator records a *Locator member, a later duplicate key replacing the
// earlier value as encoding/json does.
func (p *payload) addLocator(key, val string) {
	for i, k := range p.locKeys {
		if k == key {
			p.locVals[i] = val
			return
		}
	}
	if p.locKeys == nil {
		p.locKeys, p.locVals = p.ar.take(4), p.ar.take(4)
	}
	p.locKeys = append(p.locKeys, key)
	p.locVals = append(p.locVals, val)
}

// locatorColumns returns the locator keys sorted and their values alongside.
func (p *payload) locatorColumns() (keys, values []string) {
	if len(p.locKeys) == 0 {
		return nil, nil
	}
	keys = p.locKeys
	values = p.locVals
	if !sort.StringsAreSorted(keys) {
		sort.Sort(byKey{keys, values})
	}
	return keys, values
}

type byKey struct{ k, v []string }

func (b byKey) Len() int           { return len(b.k) }
func (b byKey) Less(i, j int) bool { return b.k[i] < b.k[j] }
func (b byKey) Swap(i, j int) {
	b.k[i], b.k[j] = b.k[j], b.k[i]
	b.v[i], b.v[j] = b.v[j], b.v[i]
}

// str reads a string member; null reads as "" without complaint.
func (p *payload) str(key, val string) string {
	switch val[0] {
	case '"':
		return jsonscan.Unquote(val)
	case 'n':
		return ""
	}
	p.errorf("data.%s is %s, not a string", key, jsonscan.Kind(val))
	return ""
}

// list reads a {listCompleted, items} member into dst.
func (p *payload) list(key, val string, dst []string) (items []string, completed bool) {
	switch val[0] {
	case 'n':
		return dst, true
	case '{':
	default:
		p.errorf("data.%s is %s, not an object", key, jsonscan.Kind(val))
		return dst, false
	}
	sawCompleted := false
	jsonscan.EachMember(val, func(k, v string) {
		switch k {
		case "listCompleted":
			switch v {
			case "true", "false":
				sawCompleted = true
				completed = v == "true"
			default:
				p.errorf("data.%s.listCompleted is %s, not a boolean", key, jsonscan.Kind(v))
			}
		case "items":
			if v[0] != '[' {
				if v[0] != 'n' {
					p.errorf("data.%s.items is %s, not an array", key, jsonscan.Kind(v))
				}
				return
			}
			jsonscan.EachElement(v, func(el string) {
				if el[0] != '"' {
					p.errorf("data.%s.items has %s, not a string", key, jsonscan.Kind(el))
					return
				}
				dst = appendUnique(dst, jsonscan.Unquote(el))
			})
		}
	})
	if !sawCompleted {
		p.errorf("data.%s.listCompleted is missing", key)
	}
	return dst, completed
}

// applyInferred fills named locators from members whose meaning depends on the
// event type: data.locator of FNOL events, data.entityLocator of numbering
// events, data.referenceLocator by data.referenceType. A member of the entity's
// own name always wins.
func (p *payload) applyInferred(eventType string) {
	setIfEmpty := func(idx int, v string) {
		if v != "" && p.named[idx] == "" {
			p.named[idx] = v
		}
	}
	if p.bareLocator != "" && (strings.HasPrefix(eventType, "claim.fnol.") || strings.HasPrefix(eventType, "fnol.")) {
		setIfEmpty(idxFnol, p.bareLocator)
	}
	if p.entityLocator != "" && strings.HasSuffix(eventType, ".numberAssignmentFailed") {
		switch first, _, _ := strings.Cut(eventType, "."); first {
		case "policy":
			setIfEmpty(idxPolicy, p.entityLocator)
		case "quote":
			setIfEmpty(idxQuote, p.entityLocator)
		case "account":
			setIfEmpty(idxAccount, p.entityLocator)
		case "invoice":
			setIfEmpty(idxInvoice, p.entityLocator)
		case "payment":
			setIfEmpty(idxPayment, p.entityLocator)
		case "fnol":
			setIfEmpty(idxFnol, p.entityLocator)
		}
	}
	if p.bareLocator != "" && strings.HasSuffix(eventType, ".config.migration.failed") {
		switch first, _, _ := strings.Cut(eventType, "."); first {
		case "quote":
			setIfEmpty(idxQuote, p.bareLocator)
		case "account":
			setIfEmpty(idxAccount, p.bareLocator)
		}
	}
	if ref := p.named[len(namedLocators)-1]; ref != "" {
		switch p.referenceType {
		case "policy":
			setIfEmpty(idxPolicy, ref)
		case "quote":
			setIfEmpty(idxQuote, ref)
		case "transaction":
			setIfEmpty(idxTransaction, ref)
		case "invoice":
			setIfEmpty(idxInvoice, ref)
		case "payment":
			setIfEmpty(idxPayment, ref)
		case "account":
			setIfEmpty(idxAccount, ref)
		}
	}
}
