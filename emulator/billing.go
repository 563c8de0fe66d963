package emulator

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// The billing look-ups of the suite flavor, which complete the policy lists
// that events cut at five items.

func isoMS(ms int64) string { return string(appendISO(nil, ms)) }

func money(cents int64) json.Number { return json.Number(formatCents(cents)) }

func formatCents(c int64) string {
	neg := c < 0
	if neg {
		c = -c
	}
	s := strconv.AppendInt(nil, c/100, 10)
	s = append(s, '.', byte('0'+c%100/10), byte('0'+c%10))
	if neg {
		return "-" + string(s)
	}
	return string(s)
}

const billingTZ = "America/New_York"

type invoiceItemJSON struct {
	Locator                 string      `json:"locator"`
	InvoiceLocator          string      `json:"invoiceLocator"`
	Timezone                string      `json:"timezone"`
	Amount                  json.Number `json:"amount"`
	RemainingAmount         json.Number `json:"remainingAmount"`
	ChargeCategory          string      `json:"chargeCategory"`
	ChargeType              string      `json:"chargeType"`
	InstallmentItemLocators []string    `json:"installmentItemLocators"`
	TransactionLocators     []string    `json:"transactionLocators"`
	PolicyLocator           string      `json:"policyLocator"`
	SettlementTime          string      `json:"settlementTime,omitempty"`
}

type invoiceJSON struct {
	Locator              string            `json:"locator"`
	AccountLocator       string            `json:"accountLocator"`
	StartTime            string            `json:"startTime"`
	EndTime              string            `json:"endTime"`
	DueTime              string            `json:"dueTime"`
	Currency             string            `json:"currency"`
	Timezone             string            `json:"timezone"`
	InvoiceState         string            `json:"invoiceState"`
	GeneratedTime        string            `json:"generatedTime"`
	InvoiceType          string            `json:"invoiceType"`
	InvoiceItems         []invoiceItemJSON `json:"invoiceItems"`
	TotalAmount          json.Number       `json:"totalAmount"`
	TotalRemainingAmount json.Number       `json:"totalRemainingAmount"`
	SettledTime          string            `json:"settledTime,omitempty"`
}

func (s *Server) getInvoice(w *reply, r *http.Request, _ draw) {
	s.genMu.Lock()
	inv, ok := s.sim.invoices[r.PathValue("locator")]
	var out invoiceJSON
	if ok {
		out = invoiceJSON{
			Locator: inv.loc, AccountLocator: inv.acct.loc,
			StartTime: isoMS(inv.start), EndTime: isoMS(inv.end), DueTime: isoMS(inv.due),
			Currency: "USD", Timezone: billingTZ, InvoiceState: "open",
			GeneratedTime: isoMS(inv.generated), InvoiceType: "normal",
			TotalAmount: money(inv.amount), TotalRemainingAmount: money(inv.amount),
		}
		if inv.aggregate {
			out.InvoiceType = "aggregate"
		}
		if inv.settled != 0 {
			out.InvoiceState = "settled"
			out.SettledTime = isoMS(inv.settled)
			out.TotalRemainingAmount = money(0)
		}
		for i, p := range inv.policies {
			item := invoiceItemJSON{
				Locator: inv.itemLocs[i], InvoiceLocator: inv.loc, Timezone: billingTZ,
				Amount: money(p.premium), RemainingAmount: money(p.premium),
				ChargeCategory: "premium", ChargeType: "premium",
				InstallmentItemLocators: []string{}, TransactionLocators: []string{},
				PolicyLocator: inv.polLocs[i],
			}
			if inv.settled != 0 {
				item.RemainingAmount = money(0)
				item.SettlementTime = isoMS(inv.settled)
			}
			out.InvoiceItems = append(out.InvoiceItems, item)
		}
	}
	s.genMu.Unlock()
	if !ok {
		s.fail(w, http.StatusNotFound, "not_found", "no invoice with locator "+r.PathValue("locator"), nil)
		return
	}
	writeJSON(w, out)
}

type creditItemJSON struct {
	ContainerLocator string      `json:"containerLocator"`
	ContainerType    string      `json:"containerType"`
	Amount           json.Number `json:"amount"`
}

type paymentJSON struct {
	Locator                 string           `json:"locator"`
	Currency                string           `json:"currency"`
	PaymentState            string           `json:"paymentState"`
	Amount                  json.Number      `json:"amount"`
	Type                    string           `json:"type"`
	CreatedAt               string           `json:"createdAt"`
	CreatedBy               string           `json:"createdBy"`
	AccountLocator          string           `json:"accountLocator"`
	PostedAt                string           `json:"postedAt"`
	ExecutionLog            []struct{}       `json:"executionLog"`
	ShortfallCreditLocators []string         `json:"shortfallCreditLocators"`
	Subpayments             []struct{}       `json:"subpayments"`
	Targets                 []creditItemJSON `json:"targets"`
	PaymentMode             string           `json:"paymentMode"`
}

func (s *Server) getPayment(w *reply, r *http.Request, _ draw) {
	s.genMu.Lock()
	pm, ok := s.sim.payments[r.PathValue("locator")]
	var out paymentJSON
	if ok {
		out = paymentJSON{
			Locator: pm.loc, Currency: "USD", PaymentState: "posted", Type: "standard",
			CreatedAt: isoMS(pm.created), CreatedBy: s.st.users[pm.user].locator,
			AccountLocator: pm.acct.loc, PostedAt: isoMS(pm.created),
			ExecutionLog: []struct{}{}, ShortfallCreditLocators: []string{}, Subpayments: []struct{}{},
			PaymentMode: "normal",
		}
		var total int64
		for _, inv := range pm.invoices {
			total += inv.amount
			out.Targets = append(out.Targets, creditItemJSON{ContainerLocator: inv.loc, ContainerType: "invoice", Amount: money(inv.amount)})
			if inv.aggregate {
				out.PaymentMode = "aggregate"
			}
		}
		out.Amount = money(total)
	}
	s.genMu.Unlock()
	if !ok {
		s.fail(w, http.StatusNotFound, "not_found", "no payment with locator "+r.PathValue("locator"), nil)
		return
	}
	writeJSON(w, out)
}

type delinquencyRefJSON struct {
	Locator            string `json:"locator"`
	DelinquencyLocator string `json:"delinquencyLocator"`
	ReferenceLocator   string `json:"referenceLocator"`
	ReferenceType      string `json:"referenceType"`
}

type delinquencySettingsJSON struct {
	AdvanceLapseTo       string `json:"advanceLapseTo"`
	GracePeriodDays      int    `json:"gracePeriodDays"`
	LapseTransactionType string `json:"lapseTransactionType"`
	DelinquencyLevel     string `json:"delinquencyLevel"`
}

type delinquencyJSON struct {
	Locator                     string                  `json:"locator"`
	AccountLocator              string                  `json:"accountLocator"`
	Timezone                    string                  `json:"timezone"`
	DelinquencyState            string                  `json:"delinquencyState"`
	Settings                    delinquencySettingsJSON `json:"settings"`
	CreatedAt                   string                  `json:"createdAt"`
	UpdatedAt                   string                  `json:"updatedAt"`
	GraceStartedAt              string                  `json:"graceStartedAt"`
	GraceEndAt                  string                  `json:"graceEndAt"`
	References                  []delinquencyRefJSON    `json:"references"`
	ConfiguredDelinquencyEvents []struct{}              `json:"configuredDelinquencyEvents"`
}

func (s *Server) getDelinquency(w *reply, r *http.Request, _ draw) {
	s.genMu.Lock()
	d, ok := s.sim.delinquencies[r.PathValue("locator")]
	var out delinquencyJSON
	if ok {
		out = delinquencyJSON{
			Locator: d.loc, AccountLocator: d.acct.loc, Timezone: billingTZ, DelinquencyState: d.state,
			Settings:  delinquencySettingsJSON{AdvanceLapseTo: "issued", GracePeriodDays: int(gracePeriod / day), LapseTransactionType: "lapse", DelinquencyLevel: "policy"},
			CreatedAt: isoMS(d.created), UpdatedAt: isoMS(d.updated),
			GraceStartedAt: isoMS(d.created), GraceEndAt: isoMS(d.created + gracePeriod),
			ConfiguredDelinquencyEvents: []struct{}{},
		}
		// Reference locators are derived from the delinquency's and keep
		// the ULID format; one reference per policy, then per invoice.
		n := 0
		ref := func(loc, typ string) {
			n++
			out.References = append(out.References, delinquencyRefJSON{
				Locator: refLocator(d.loc, n), DelinquencyLocator: d.loc, ReferenceLocator: loc, ReferenceType: typ,
			})
		}
		for _, p := range d.polLocs {
			ref(p, "policy")
		}
		for _, inv := range d.invoices {
			ref(inv.loc, "invoice")
		}
	}
	s.genMu.Unlock()
	if !ok {
		s.fail(w, http.StatusNotFound, "not_found", "no delinquency with locator "+r.PathValue("locator"), nil)
		return
	}
	writeJSON(w, out)
}

// refLocator derives the n-th sub-locator of a ULID by replacing its last
// two characters, which keeps it a valid, unique ULID.
func refLocator(loc string, n int) string {
	return loc[:24] + string(crockford[n/32%32]) + string(crockford[n%32])
}

func writeJSON(w *reply, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs are encoded here
	}
	w.json(http.StatusOK, b)
}
