package mapping

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/tributary-cdc/tributary/source"
)

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

// samplePayloads is a mix of payloads in the proportions a real stream has
// them: mostly policy and billing events, a few classic ones.
var samplePayloads = []struct{ flavor, typ, data string }{
	{source.FlavorSuite, "policy.quote.price", `{"quoteLocator":"01JQ0000000000000000000001"}`},
	{source.FlavorSuite, "policy.change.issue", `{"policyLocator":"01JP0000000000000000000001","transactionLocator":"01JT0000000000000000000001"}`},
	{source.FlavorSuite, "policy.status.update", `{"policyLocator":"01JP0000000000000000000001","newStatuses":{"listCompleted":true,"items":["onRisk"]},"removedStatuses":{"listCompleted":true,"items":["pending"]}}`},
	{source.FlavorSuite, "billing.invoice.generate", `{"accountLocator":"01JA0000000000000000000001","invoiceLocator":"01JI0000000000000000000001","generateTime":"2025-03-04T05:06:07.891Z","invoiceType":"normal","policyLocators":{"listCompleted":true,"items":["01JP0000000000000000000001","01JP0000000000000000000002"]}}`},
	{source.FlavorSuite, "billing.payment.post", `{"paymentLocator":"01JY0000000000000000000001","policyLocators":{"listCompleted":false,"items":["01JP0000000000000000000001","01JP0000000000000000000002","01JP0000000000000000000003","01JP0000000000000000000004","01JP0000000000000000000005"]}}`},
	{source.FlavorSuite, "policy.account.create", `{"accountLocator":"01JA0000000000000000000001"}`},
	{source.FlavorClassic, "cancellation.issue", `{"policyLocator":"100000042","policyholderLocator":"100000007","cancellationLocator":"100000099","cancellationName":"insuredRequest"}`},
	{source.FlavorClassic, "invoice.issue", `{"invoiceLocator":"100000011","policyLocator":"100000042","policyholderLocator":"100000007"}`},
}

// sampleEvents returns n events cycling through samplePayloads.
func sampleEvents(n int) []source.Event {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]source.Event, n)
	for i := range out {
		p := samplePayloads[i%len(samplePayloads)]
		ts := base.Add(time.Duration(i) * 1500 * time.Millisecond)
		out[i] = source.Event{
			Locator:     fmt.Sprintf("01JE%022d", i),
			RequestID:   fmt.Sprintf("01JR%022d", i/3),
			UserLocator: "2d1c0f5e-0000-4000-8000-000000000001",
			Tenant:      "tenant-a",
			Type:        p.typ,
			Timestamp:   ts,
			Data:        json.RawMessage(p.data),
			Flavor:      p.flavor,
			Seq:         uint64(ts.UnixMilli()),
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }
