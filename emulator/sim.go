package emulator

import (
	"container/heap"
	"math/rand/v2"
	"strconv"
	"time"
)

// Policy statuses of the suite flavor, as a bit set.
type statusSet uint8

const (
	stPending statusSet = 1 << iota
	stInGap
	stExpired
	stCancelled
	stCancelPending
	stOnRisk
	stDelinquent
	stDoNotRenew
)

// statusNames lists the statuses in the order they are written.
var statusNames = []struct {
	bit  statusSet
	name string
}{
	{stPending, "pending"}, {stInGap, "inGap"}, {stExpired, "expired"}, {stCancelled, "cancelled"},
	{stCancelPending, "cancelPending"}, {stOnRisk, "onRisk"}, {stDelinquent, "delinquent"}, {stDoNotRenew, "doNotRenew"},
}

// Names of manual cancellations; a lapse is named "lapse".
const cancelLapse = "lapse"

var manualCancelNames = []string{"insuredRequest", "underwriting"}

const (
	day          = int64(24 * time.Hour / time.Millisecond)
	gracePeriod  = 20 * day
	dueAfter     = 15 * day
	maxListItems = 5
)

type account struct {
	loc      string
	fleet    bool
	size     int // policies the account keeps in force
	policies []*policy
	billing  bool // a monthly billing cycle is scheduled
	delinq   *delinquency
	isNew    bool
}

type policy struct {
	loc      string
	acct     *account
	status   statusSet
	term     int // incremented at each renewal; stale actions compare it
	termEnd  int64
	ended    bool
	cancel   bool // a cancellation was issued (maybe effective later)
	renewing bool
	gapDays  int
	premium  int64 // monthly premium in cents
}

type invoice struct {
	loc       string
	acct      *account
	policies  []*policy
	polLocs   []string
	itemLocs  []string
	aggregate bool
	generated int64
	due       int64
	start     int64
	end       int64
	settled   int64 // 0 while open
	amount    int64 // cents
}

type payment struct {
	loc      string
	acct     *account
	invoices []*invoice
	created  int64
	user     uint8
}

type delinquency struct {
	loc      string
	acct     *account
	invoices []*invoice
	polLocs  []string
	created  int64
	updated  int64
	state    string
}

// Kinds of scheduled actions.
const (
	actNewBusiness = iota
	actIssue
	actPolicyStart
	actBilling
	actPayment
	actDue
	actLapse
	actEndorse
	actCancel
	actCancelEffective
	actRenewalDecision
	actReminder7
	actTermEnd
	actGapEnd
	actClaim
)

type action struct {
	at   int64
	seq  uint64
	kind int
	p    *policy
	a    *account
	term int
	invs []*invoice
}

type actionQueue []*action

func (q actionQueue) Len() int { return len(q) }
func (q actionQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q actionQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *actionQueue) Push(x any)   { *q = append(*q, x.(*action)) }
func (q *actionQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return x
}

// sim is the deterministic policy-lifecycle simulation that produces the stream.
// It is not safe for concurrent use; the Server serializes calls.
type sim struct {
	classic bool
	st      *store
	rng     *rand.Rand
	evIDs   idGen // event locators
	entIDs  idGen // entity locators (suite)
	reqIDs  idGen // request IDs (suite)
	counter int64 // classic entity locators
	queue   actionQueue
	seq     uint64
	lastMS  int64
	human   int   // users[0] is the system; users[1:human+1] are people
	floorMS int64 // no request starts earlier (the wall clock with LiveClock)

	// Billing entities of the suite flavor, for the look-up endpoints.
	invoices      map[string]*invoice
	payments      map[string]*payment
	delinquencies map[string]*delinquency

	// futureCancels counts cancellations issued with a later effective
	// date (for tests of the classic rule that nothing fires then).
	futureCancels map[string]int64

	// Output of the current step.
	out       []record
	outReqs   []request
	curReq    request
	curUser   uint8
	curMS     int64
	nextIdx   uint32 // store index of the first record of this step
	baseReqs  uint32 // store index of the first request of this step
	curReqIdx uint32 // store index of the current request
	buf       []byte
}

var userNames = []string{"system", "alice.martin", "bob.nguyen", "carla.diaz", "dmitri.ivanov", "erin.okafor", "farid.haddad"}

func newSim(cfg Config) (*sim, *store) {
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eed))
	users := make([]user, len(userNames))
	for i, n := range userNames {
		users[i] = user{locator: uuidString(rng), name: n}
	}
	st := newStore(cfg.Flavor, cfg.Tenant, users)
	s := &sim{
		classic:       cfg.Flavor == FlavorClassic,
		st:            st,
		rng:           rng,
		evIDs:         idGen{rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 1))},
		entIDs:        idGen{rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 2))},
		reqIDs:        idGen{rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 3))},
		counter:       100000000,
		human:         len(userNames) - 1,
		invoices:      map[string]*invoice{},
		payments:      map[string]*payment{},
		delinquencies: map[string]*delinquency{},
		futureCancels: map[string]int64{},
		lastMS:        cfg.Start.UnixMilli() - 1,
	}
	start := cfg.Start.UnixMilli()
	// The initial population: fleet accounts of 6 to 9 policies (about a
	// tenth of accounts when there are enough policies), the rest single.
	for n := 0; n < cfg.Policies; {
		a := &account{isNew: true, size: 1}
		if cfg.Policies-n >= 6 && cfg.Policies >= 10 && s.rng.IntN(10) == 0 {
			a.fleet = true
			a.size = min(6+s.rng.IntN(4), cfg.Policies-n)
		}
		a.loc = s.entityLoc(start)
		for range a.size {
			s.schedule(&action{at: start + s.rng.Int64N(30*day), kind: actNewBusiness, a: a})
		}
		n += a.size
	}
	return s, st
}

func (s *sim) schedule(a *action) {
	s.seq++
	a.seq = s.seq
	heap.Push(&s.queue, a)
}

// entityLoc returns a new entity locator: a ULID (suite) or a decimal string (classic).
func (s *sim) entityLoc(ms int64) string {
	if s.classic {
		s.counter++
		return strconv.FormatInt(s.counter, 10)
	}
	return ulid(s.entIDs.next(ms))
}

func (s *sim) humanUser() uint8 { return uint8(1 + s.rng.IntN(s.human)) }

// generate runs the simulation until at least n events were produced and
// returns them with their requests; nextIdx is the store index of the first.
func (s *sim) generate(n, nextIdx, nextReq int) ([]record, []request) {
	s.out, s.outReqs = nil, nil
	s.nextIdx, s.baseReqs = uint32(nextIdx), uint32(nextReq)
	for len(s.out) < n && s.queue.Len() > 0 {
		a := heap.Pop(&s.queue).(*action)
		s.run(a)
	}
	return s.out, s.outReqs
}

// begin starts a request at (at least) time at, caused by user u.
func (s *sim) begin(at int64, u uint8) {
	if at < s.floorMS {
		at = s.floorMS
	}
	if at <= s.lastMS {
		at = s.lastMS + 1
	}
	s.curMS = at
	s.curUser = u
	var id string
	if s.classic {
		id = uuidString(s.rng)
	} else {
		id = ulid(s.reqIDs.next(at))
	}
	s.curReq = request{id: id, first: s.nextIdx + uint32(len(s.out))}
	s.curReqIdx = s.baseReqs + uint32(len(s.outReqs))
}

// end closes the current request.
func (s *sim) end() {
	if s.curReq.n > 0 {
		s.outReqs = append(s.outReqs, s.curReq)
	}
	s.curReq = request{}
}

// emit appends one event of the current request with the given data object.
func (s *sim) emit(typ string, data []byte) {
	ms := s.curMS // events of one request share its timestamp; locators order them
	s.lastMS = ms
	id := s.evIDs.next(ms)
	tsBuf := [32]byte{}
	var b []byte
	if s.classic {
		n := len(`{"id":"","timestamp":"","type":"","data":}`) + 36 + 13 + len(typ) + len(data)
		b = s.st.alloc(n)
		b = append(b, `{"id":"`...)
		b = appendUUIDv7(b, id)
		b = append(b, `","timestamp":"`...)
		b = strconv.AppendInt(b, ms, 10)
	} else {
		u := s.st.users[s.curUser].locator
		n := len(`{"locator":"","requestId":"","userLocator":"","timestamp":"","type":"","data":}`) + 26 + 26 + len(u) + 24 + len(typ) + len(data)
		b = s.st.alloc(n)
		b = append(b, `{"locator":"`...)
		b = appendULID(b, id)
		b = append(b, `","requestId":"`...)
		b = append(b, s.curReq.id...)
		b = append(b, `","userLocator":"`...)
		b = append(b, u...)
		b = append(b, `","timestamp":"`...)
		b = append(b, appendISO(tsBuf[:0], ms)...)
	}
	b = append(b, `","type":"`...)
	b = append(b, typ...)
	b = append(b, `","data":`...)
	off := len(b)
	b = append(b, data...)
	b = append(b, '}')
	s.out = append(s.out, record{raw: b, ms: ms, req: s.curReqIdx, typ: s.st.typeID(typ), user: s.curUser, dataOff: uint16(off)})
	s.curReq.n++
}

// appendISO appends ms as ISO-8601 UTC with milliseconds.
func appendISO(b []byte, ms int64) []byte {
	return time.UnixMilli(ms).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
}

// Data encoders.

func (s *sim) obj() []byte { s.buf = append(s.buf[:0], '{'); return s.buf }

func field(b []byte, k, v string) []byte {
	if len(b) > 1 {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, k...)
	b = append(b, `":"`...)
	b = append(b, v...)
	return append(b, '"')
}

func close1(b []byte) []byte { return append(b, '}') }

// appendList appends {listCompleted, items} with at most five items.
func appendList(b []byte, items []string) []byte {
	b = append(b, `{"listCompleted":`...)
	b = strconv.AppendBool(b, len(items) <= maxListItems)
	b = append(b, `,"items":[`...)
	for i, it := range items {
		if i == maxListItems {
			break
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, it...)
		b = append(b, '"')
	}
	return append(b, "]}"...)
}

func appendStatuses(b []byte, set statusSet) []byte {
	b = append(b, `{"listCompleted":true,"items":[`...)
	first := true
	for _, st := range statusNames {
		if set&st.bit == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, st.name...)
		b = append(b, '"')
	}
	return append(b, "]}"...)
}

// setStatus moves p to the status set next, emitting policy.status.update
// (suite) with exactly the difference.
func (s *sim) setStatus(p *policy, next statusSet) {
	added, removed := next&^p.status, p.status&^next
	p.status = next
	if s.classic || (added == 0 && removed == 0) {
		return
	}
	b := field(s.obj(), "policyLocator", p.loc)
	b = append(b, `,"newStatuses":`...)
	b = appendStatuses(b, added)
	b = append(b, `,"removedStatuses":`...)
	b = appendStatuses(b, removed)
	s.buf = close1(b)
	s.emit("policy.status.update", s.buf)
}

func (s *sim) suiteLoc(typ, key, v string) {
	s.buf = close1(field(s.obj(), key, v))
	s.emit(typ, s.buf)
}

func (s *sim) suiteTxn(typ string, p *policy, txn string) {
	b := field(s.obj(), "policyLocator", p.loc)
	s.buf = close1(field(b, "transactionLocator", txn))
	s.emit(typ, s.buf)
}

// classicEv emits a classic event whose data names policy p plus kv pairs.
func (s *sim) classicEv(typ string, p *policy, kv ...string) {
	b := s.obj()
	for i := 0; i+1 < len(kv); i += 2 {
		b = field(b, kv[i], kv[i+1])
	}
	b = field(b, "policyLocator", p.loc)
	s.buf = close1(field(b, "policyholderLocator", p.acct.loc))
	s.emit(typ, s.buf)
}

func (s *sim) billingEv(typ, key, loc string, pols []string, extra func([]byte) []byte) {
	b := field(s.obj(), key, loc)
	if extra != nil {
		b = extra(b)
	}
	b = append(b, `,"policyLocators":`...)
	b = appendList(b, pols)
	s.buf = close1(b)
	s.emit(typ, s.buf)
}

func (s *sim) invoiceEv(typ string, inv *invoice) {
	s.billingEv(typ, "invoiceLocator", inv.loc, inv.polLocs, func(b []byte) []byte {
		b = field(b, "accountLocator", inv.acct.loc)
		if typ == "billing.invoice.generate" {
			var ts [32]byte
			b = field(b, "generateTime", string(appendISO(ts[:0], inv.generated)))
		}
		t := "normal"
		if inv.aggregate {
			t = "aggregate"
		}
		return field(b, "invoiceType", t)
	})
}

// run carries out one scheduled action.
func (s *sim) run(a *action) {
	p := a.p
	stale := p != nil && (p.ended || a.term != p.term)
	switch a.kind {
	case actNewBusiness:
		s.newBusiness(a)
	case actIssue:
		s.issue(a)
	case actPolicyStart:
		if !stale {
			s.begin(a.at, 0)
			s.setStatus(p, p.status&^stPending|stOnRisk)
			s.end()
		}
	case actBilling:
		s.billingCycle(a)
	case actPayment:
		s.pay(a)
	case actDue:
		s.due(a)
	case actLapse:
		s.lapse(a)
	case actEndorse:
		if !stale && !p.cancel {
			s.endorse(a)
		}
	case actClaim:
		if !stale && s.classic {
			s.begin(a.at, s.humanUser())
			claim := s.entityLoc(a.at)
			s.classicEv("claim.create", p, "claimLocator", claim)
			s.classicEv("subClaim.create", p, "subClaimLocator", s.entityLoc(a.at), "claimLocator", claim)
			s.end()
		}
	case actCancel:
		if !stale && !p.cancel {
			s.manualCancel(a)
		}
	case actCancelEffective:
		if !stale {
			// Classic: nothing fires at the effective date.
			s.begin(a.at, 0)
			s.setStatus(p, stCancelled)
			s.end()
			s.endPolicy(p, a.at)
		}
	case actRenewalDecision:
		if !stale && !p.cancel {
			s.renewalDecision(a)
		}
	case actReminder7:
		if !stale && !p.cancel && s.classic {
			s.begin(a.at, 0)
			s.classicEv("policy.end.reminder", p, "reminderName", "expiration7Days")
			s.end()
		}
	case actTermEnd:
		if !stale {
			s.termEnd(a)
		}
	case actGapEnd:
		if !stale {
			s.begin(a.at, 0)
			s.setStatus(p, p.status&^stInGap|stOnRisk)
			s.end()
		}
	}
}

func (s *sim) newBusiness(a *action) {
	acct := a.a
	p := &policy{acct: acct, premium: 2000 + s.rng.Int64N(30000)}
	u := s.humanUser()
	s.begin(a.at, u)
	if s.classic {
		p.loc = s.entityLoc(a.at)
		s.classicEv("policy.create", p)
	} else {
		if acct.isNew {
			s.suiteLoc("policy.account.create", "accountLocator", acct.loc)
		}
		quote := s.entityLoc(a.at)
		s.suiteLoc("policy.quote.create", "quoteLocator", quote)
		s.suiteLoc("policy.quote.price", "quoteLocator", quote)
		p.loc = quote // replaced by the policy locator at issue
	}
	acct.isNew = false
	s.end()
	s.schedule(&action{at: a.at + 5*60_000 + s.rng.Int64N(3*day), kind: actIssue, p: p, a: acct})
}

func (s *sim) issue(a *action) {
	p, acct := a.p, a.a
	s.begin(a.at, s.humanUser())
	startAt := a.at
	if s.rng.IntN(3) == 0 {
		startAt += day * (1 + s.rng.Int64N(14))
	}
	if s.classic {
		s.classicEv("policy.issue", p)
	} else {
		quote := p.loc
		s.suiteLoc("policy.quote.accept", "quoteLocator", quote)
		s.suiteLoc("policy.quote.issue", "quoteLocator", quote)
		p.loc = s.entityLoc(a.at)
		if startAt > a.at {
			s.setStatus(p, stPending)
		} else {
			s.setStatus(p, stOnRisk)
		}
	}
	s.end()
	if s.classic {
		p.status = stOnRisk
		if startAt > a.at {
			p.status = stPending
		}
	}
	if startAt > a.at {
		s.schedule(&action{at: startAt, kind: actPolicyStart, p: p, term: p.term})
	}
	acct.policies = append(acct.policies, p)
	s.startTerm(p, startAt)
	if !acct.billing {
		acct.billing = true
		s.schedule(&action{at: a.at + day*(1+s.rng.Int64N(5)), kind: actBilling, a: acct})
	}
}

// startTerm schedules what happens during a 12-month term starting at start.
func (s *sim) startTerm(p *policy, start int64) {
	p.termEnd = time.UnixMilli(start).UTC().AddDate(1, 0, 0).UnixMilli()
	length := p.termEnd - start
	if s.rng.IntN(10) < 3 {
		s.schedule(&action{at: start + s.rng.Int64N(length-40*day), kind: actEndorse, p: p, term: p.term})
	}
	if s.rng.IntN(100) < 8 {
		s.schedule(&action{at: start + 10*day + s.rng.Int64N(length-60*day), kind: actCancel, p: p, term: p.term})
	}
	if s.classic && s.rng.IntN(100) < 15 {
		s.schedule(&action{at: start + s.rng.Int64N(length-40*day), kind: actClaim, p: p, term: p.term})
	}
	s.schedule(&action{at: p.termEnd - 30*day, kind: actRenewalDecision, p: p, term: p.term})
	s.schedule(&action{at: p.termEnd, kind: actTermEnd, p: p, term: p.term})
}

func (s *sim) endorse(a *action) {
	p := a.p
	s.begin(a.at, s.humanUser())
	if s.classic {
		e := s.entityLoc(a.at)
		s.classicEv("endorsement.create", p, "endorsementLocator", e)
		s.classicEv("endorsement.issue", p, "endorsementLocator", e)
	} else {
		txn := s.entityLoc(a.at)
		s.suiteTxn("policy.change.create", p, txn)
		s.suiteTxn("policy.change.price", p, txn)
		s.suiteTxn("policy.change.issue", p, txn)
	}
	s.end()
}

func (s *sim) manualCancel(a *action) {
	p := a.p
	name := manualCancelNames[s.rng.IntN(len(manualCancelNames))]
	effective := a.at
	if s.rng.IntN(2) == 0 {
		effective = a.at + day*(5+s.rng.Int64N(40))
		if effective >= p.termEnd-day {
			effective = a.at
		}
	}
	p.cancel = true
	s.begin(a.at, s.humanUser())
	if s.classic {
		c := s.entityLoc(a.at)
		s.classicEv("cancellation.create", p, "cancellationLocator", c, "cancellationName", name)
		s.classicEv("cancellation.issue", p, "cancellationLocator", c, "cancellationName", name)
	} else {
		txn := s.entityLoc(a.at)
		s.suiteTxn("policy.cancellation.create", p, txn)
		s.suiteTxn("policy.cancellation.price", p, txn)
		s.suiteTxn("policy.cancellation.accept", p, txn)
		s.suiteTxn("policy.cancellation.issue", p, txn)
		if effective == a.at {
			s.setStatus(p, stCancelled)
		} else {
			s.setStatus(p, p.status|stCancelPending)
		}
	}
	s.end()
	if effective == a.at {
		if s.classic {
			p.status = stCancelled
		}
		s.endPolicy(p, a.at)
		return
	}
	s.futureCancels[p.loc] = effective
	s.schedule(&action{at: effective, kind: actCancelEffective, p: p, term: p.term})
}

func (s *sim) renewalDecision(a *action) {
	p := a.p
	if s.classic {
		s.begin(a.at, 0)
		s.classicEv("policy.end.reminder", p, "reminderName", "expiration30Days")
		s.end()
	}
	if s.rng.IntN(4) != 0 {
		p.renewing = true
		p.gapDays = 0
		if !s.classic && s.rng.IntN(20) == 0 {
			p.gapDays = 3
		}
		at := a.at + day*(1+s.rng.Int64N(10))
		s.begin(at, s.humanUser())
		if s.classic {
			r := s.entityLoc(at)
			s.classicEv("renewal.create", p, "renewalLocator", r)
			s.classicEv("renewal.issue", p, "renewalLocator", r)
		} else {
			txn := s.entityLoc(at)
			s.suiteTxn("policy.renewal.create", p, txn)
			s.suiteTxn("policy.renewal.price", p, txn)
			s.suiteTxn("policy.renewal.accept", p, txn)
			s.suiteTxn("policy.renewal.issue", p, txn)
		}
		s.end()
		return
	}
	p.renewing = false
	if s.classic {
		s.schedule(&action{at: p.termEnd - 7*day, kind: actReminder7, p: p, term: p.term})
	} else if s.rng.IntN(2) == 0 {
		s.begin(a.at+day, s.humanUser())
		s.setStatus(p, p.status|stDoNotRenew)
		s.end()
	}
}

func (s *sim) termEnd(a *action) {
	p := a.p
	if p.renewing {
		p.term++
		p.renewing = false
		start := a.at
		if p.gapDays > 0 {
			s.begin(a.at, 0)
			s.setStatus(p, p.status&^stOnRisk|stInGap)
			s.end()
			start = a.at + int64(p.gapDays)*day
			s.schedule(&action{at: start, kind: actGapEnd, p: p, term: p.term})
		}
		s.startTerm(p, start)
		return
	}
	s.begin(a.at, 0)
	if s.classic {
		s.classicEv("policy.end", p)
		p.status = stExpired
	} else {
		s.setStatus(p, stExpired)
	}
	s.end()
	s.endPolicy(p, a.at)
}

// endPolicy takes p out of force and schedules new business in its account.
func (s *sim) endPolicy(p *policy, at int64) {
	p.ended = true
	acct := p.acct
	for i, q := range acct.policies {
		if q == p {
			acct.policies = append(acct.policies[:i], acct.policies[i+1:]...)
			break
		}
	}
	s.schedule(&action{at: at + day*(1+s.rng.Int64N(30)), kind: actNewBusiness, a: acct})
}

// billable returns the account's policies that are invoiced this month.
func billable(acct *account) []*policy {
	var out []*policy
	for _, p := range acct.policies {
		if !p.ended && p.status&(stOnRisk|stPending|stDelinquent|stCancelPending|stDoNotRenew) != 0 {
			out = append(out, p)
		}
	}
	return out
}

func (s *sim) newInvoice(acct *account, pols []*policy, at int64, aggregate bool) *invoice {
	inv := &invoice{loc: s.entityLoc(at), acct: acct, policies: pols, aggregate: aggregate,
		generated: at, due: at + dueAfter, start: at, end: time.UnixMilli(at).UTC().AddDate(0, 1, 0).UnixMilli()}
	for _, p := range pols {
		inv.polLocs = append(inv.polLocs, p.loc)
		inv.amount += p.premium
		if !s.classic {
			inv.itemLocs = append(inv.itemLocs, s.entityLoc(at))
		}
	}
	if !s.classic {
		s.invoices[inv.loc] = inv
	}
	return inv
}

func (s *sim) billingCycle(a *action) {
	acct := a.a
	next := time.UnixMilli(a.at).UTC().AddDate(0, 1, 0).UnixMilli()
	s.schedule(&action{at: next, kind: actBilling, a: acct})
	pols := billable(acct)
	if len(pols) == 0 {
		return
	}
	var invs []*invoice
	s.begin(a.at, 0)
	if s.classic {
		for _, p := range pols {
			inv := s.newInvoice(acct, []*policy{p}, a.at, false)
			invs = append(invs, inv)
			s.classicEv("invoice.issue", p, "invoiceLocator", inv.loc)
		}
	} else {
		inv := s.newInvoice(acct, pols, a.at, acct.fleet && len(pols) > 1)
		invs = append(invs, inv)
		s.invoiceEv("billing.invoice.generate", inv)
	}
	s.end()
	if s.rng.IntN(100) < 94 {
		s.schedule(&action{at: a.at + day*(1+s.rng.Int64N(14)), kind: actPayment, a: acct, invs: invs})
	} else {
		s.schedule(&action{at: a.at + dueAfter, kind: actDue, a: acct, invs: invs})
	}
}

func openInvoices(invs []*invoice) []*invoice {
	var out []*invoice
	for _, inv := range invs {
		if inv.settled == 0 {
			out = append(out, inv)
		}
	}
	return out
}

func (s *sim) pay(a *action) {
	acct := a.a
	invs := openInvoices(a.invs)
	if len(invs) == 0 {
		return
	}
	u := s.humanUser()
	s.begin(a.at, u)
	if s.classic {
		for _, inv := range invs {
			inv.settled = a.at
			s.classicEv("payment.pay", inv.policies[0], "paymentLocator", s.entityLoc(a.at), "invoiceLocator", inv.loc)
		}
	} else {
		pm := &payment{loc: s.entityLoc(a.at), acct: acct, invoices: invs, created: a.at, user: u}
		s.payments[pm.loc] = pm
		var pols []string
		for _, inv := range invs {
			pols = append(pols, inv.polLocs...)
		}
		s.billingEv("billing.payment.create", "paymentLocator", pm.loc, pols, nil)
		s.billingEv("billing.payment.post", "paymentLocator", pm.loc, pols, nil)
		for _, inv := range invs {
			inv.settled = a.at
			s.invoiceEv("billing.invoice.settle", inv)
		}
	}
	for _, inv := range invs {
		inv.settled = a.at
	}
	if d := acct.delinq; d != nil && len(openInvoices(d.invoices)) == 0 {
		acct.delinq = nil
		d.state, d.updated = "settled", a.at
		if !s.classic {
			s.billingEv("billing.delinquency.settle", "delinquencyLocator", d.loc, d.polLocs, nil)
		}
		for _, inv := range d.invoices {
			for _, p := range inv.policies {
				if !p.ended && p.status&stDelinquent != 0 {
					s.setStatus(p, p.status&^stDelinquent)
				}
			}
		}
	}
	s.end()
}

func (s *sim) due(a *action) {
	acct := a.a
	invs := openInvoices(a.invs)
	if len(invs) == 0 {
		return
	}
	s.begin(a.at, 0)
	d := &delinquency{loc: s.entityLoc(a.at), acct: acct, invoices: invs, created: a.at, updated: a.at, state: "inGrace"}
	for _, inv := range invs {
		d.polLocs = append(d.polLocs, inv.polLocs...)
	}
	acct.delinq = d
	if s.classic {
		for _, inv := range invs {
			p := inv.policies[0]
			s.classicEv("invoice.pastDue", p, "invoiceLocator", inv.loc)
			if !p.ended {
				s.classicEv("policy.gracePeriod", p, "invoiceLocator", inv.loc)
			}
		}
	} else {
		s.delinquencies[d.loc] = d
		s.billingEv("billing.delinquency.create", "delinquencyLocator", d.loc, d.polLocs, nil)
		for _, inv := range invs {
			for _, p := range inv.policies {
				if !p.ended {
					s.setStatus(p, p.status|stDelinquent)
				}
			}
		}
	}
	s.end()
	if s.rng.IntN(10) < 6 {
		s.schedule(&action{at: a.at + day*(1+s.rng.Int64N(gracePeriod/day-2)), kind: actPayment, a: acct, invs: invs})
	} else {
		s.schedule(&action{at: a.at + gracePeriod, kind: actLapse, a: acct, invs: invs})
	}
}

func (s *sim) lapse(a *action) {
	acct := a.a
	invs := openInvoices(a.invs)
	if len(invs) == 0 {
		return
	}
	s.begin(a.at, 0)
	d := acct.delinq
	acct.delinq = nil
	if d != nil {
		d.state, d.updated = "lapseTransactionCreated", a.at
		if !s.classic {
			s.billingEv("billing.delinquency.lapse", "delinquencyLocator", d.loc, d.polLocs, nil)
		}
	}
	var lapsed []*policy
	for _, inv := range invs {
		for _, p := range inv.policies {
			if p.ended || p.cancel {
				continue
			}
			p.cancel = true
			lapsed = append(lapsed, p)
			if s.classic {
				c := s.entityLoc(a.at)
				s.classicEv("cancellation.create", p, "cancellationLocator", c, "cancellationName", cancelLapse)
				s.classicEv("cancellation.issue", p, "cancellationLocator", c, "cancellationName", cancelLapse)
				p.status = stCancelled
			} else {
				txn := s.entityLoc(a.at)
				s.suiteTxn("policy.cancellation.create", p, txn)
				s.suiteTxn("policy.cancellation.issue", p, txn)
				s.setStatus(p, stCancelled)
			}
		}
	}
	s.end()
	for _, p := range lapsed {
		s.endPolicy(p, a.at)
	}
}
