package mapping

import "strings"

// Table names of DefaultSchema.
const (
	TableEvents              = "events"
	TableEventPolicies       = "event_policies"
	TablePolicyStatusChanges = "policy_status_changes"
)

// View names of DefaultSchema.
const (
	ViewPolicyCurrentStatus = "policy_current_status"
	ViewPolicyEndings       = "policy_endings"
)

// Values of policy_status_changes.change.
const (
	ChangeAdded   = "added"
	ChangeRemoved = "removed"
)

// namedLocator is a payload key extracted into an events column of its own.
type namedLocator struct {
	key     string // the JSON key of data
	column  string // the events column
	comment string
}

// namedLocators are the payload keys with their own events column, in column
// order. Both flavors use the same key for the same entity; a few entities are
// also found under other keys (see applyInferred).
var namedLocators = [...]namedLocator{
	{"policyLocator", "policy_locator", "The policy the event is about (data.policyLocator), or the policy a reference or numbering event names; empty when absent."},
	{"quoteLocator", "quote_locator", "The quote (data.quoteLocator, or a quote reference); empty when absent."},
	{"transactionLocator", "transaction_locator", "The policy transaction (data.transactionLocator, or a transaction reference); empty when absent."},
	{"invoiceLocator", "invoice_locator", "The invoice (data.invoiceLocator, or an invoice reference); empty when absent."},
	{"paymentLocator", "payment_locator", "The payment (data.paymentLocator, or a payment reference); empty when absent."},
	{"delinquencyLocator", "delinquency_locator", "The delinquency (data.delinquencyLocator); empty when absent."},
	{"accountLocator", "account_locator", "The billing account (data.accountLocator, or an account reference); empty when absent."},
	{"writeOffLocator", "writeoff_locator", "The write-off (data.writeOffLocator); empty when absent."},
	{"cancellationLocator", "cancellation_locator", "The classic cancellation (data.cancellationLocator); empty when absent."},
	{"endorsementLocator", "endorsement_locator", "The classic endorsement (data.endorsementLocator); empty when absent."},
	{"renewalLocator", "renewal_locator", "The classic renewal (data.renewalLocator); empty when absent."},
	{"reinstatementLocator", "reinstatement_locator", "The classic reinstatement (data.reinstatementLocator); empty when absent."},
	{"claimLocator", "claim_locator", "The claim (data.claimLocator); empty when absent."},
	{"subClaimLocator", "sub_claim_locator", "The classic sub-claim (data.subClaimLocator); empty when absent."},
	{"policyholderLocator", "policyholder_locator", "The classic policyholder (data.policyholderLocator); empty when absent."},
	{"fnolLocator", "fnol_locator", "The first notice of loss (data.fnolLocator, or data.locator of claim.fnol.* events); empty when absent."},
	{"disbursementLocator", "disbursement_locator", "The disbursement (data.disbursementLocator); empty when absent."},
	{"documentLocator", "document_locator", "The document (data.documentLocator); empty when absent."},
	{"referenceLocator", "reference_locator", "The entity a document or user-association event refers to (data.referenceLocator); its kind is reference_type."},
}

// Column positions of the events table; eventColumns lists them in this order.
const (
	evLocator = iota
	evRequestID
	evUserLocator
	evUsername
	evTransactionID
	evTenant
	evType
	evTypeClass
	evKnownType
	evTimestamp
	evFlavor
	evData
	evParseError
	evNamed // first of the namedLocators columns
)

const (
	evReferenceType = evNamed + len(namedLocators) + iota
	evLocatorKeys
	evLocatorValues
	evPolicyLocators
	evPolicyLocatorsComplete
	evNewStatuses
	evRemovedStatuses
	evCancellationName
	evReminderName
	evSource
	evPosition
	evVersion
	evIngestedAt
	evTimestampUnixMs
	evActor
	evInvoiceType // first of billingColumns
	evGenerateTime
	evGenerateTimeUnixMs
	evAutopayTime
	evAutopayTimeUnixMs
	evColumnCount
)

// Column positions of the event_policies table.
const (
	epTenant = iota
	epPolicyLocator
	epEventLocator
	epType
	epTypeClass
	epTimestamp
	epFlavor
	epListComplete
	epSource
	epVersion
	epIngestedAt
	epTimestampUnixMs
	epColumnCount
)

// Column positions of the policy_status_changes table.
const (
	scTenant = iota
	scPolicyLocator
	scEventLocator
	scStatus
	scChange
	scTimestamp
	scType
	scListComplete
	scSource
	scVersion
	scIngestedAt
	scTimestampUnixMs
	scColumnCount
)

const (
	commentSource     = "Name of the pipeline that wrote the row (--pipeline)."
	commentVersion    = "ReplacingMergeTree version: the event's Seq times two, plus one when the row's policy list is complete. Deterministic, so a replayed event collapses onto itself and an enriched row wins."
	commentIngestedAt = "When the pipeline mapped the row (wall clock). Informational only: it is no part of any key or version."
	commentUnixMs     = "timestamp as milliseconds since 1970-01-01 UTC: exact on every server (legacy timestamp holds whole seconds), the column to order, compare and subtract times by."
)

func eventColumns() []Column {
	cols := []Column{
		{"locator", String, "The event's identifier: the suite's locator (a ULID) or the classic id."},
		{"request_id", String, "Suite: the API request that caused the event (requestId); empty for classic."},
		{"user_locator", String, "Suite: the user who caused the event (userLocator, a UUID); empty for classic."},
		{"username", String, "Classic attributed stream: the user who caused the event; empty otherwise."},
		{"transaction_id", String, "Classic webhook: transactionId; empty otherwise."},
		{"tenant", LowString, "The tenant the event belongs to."},
		{"type", LowString, "The event type, such as policy.status.update or invoice.issue."},
		{"type_class", LowString, "The event family (policy, quote, transaction, invoice, payment, delinquency, billing, cancellation, claim, …; other when unknown)."},
		{"known_type", Bool, "Whether the mapping knows the event type (a published suite type or a classic type)."},
		{"timestamp", Time, "When the event happened (UTC, millisecond precision)."},
		{"flavor", LowString, "Where the event came from: suite, classic or postgres."},
		{"data", String, "The event's payload, raw JSON exactly as delivered."},
		{"parse_error", String, "Why data could not be fully read (not an object, malformed JSON, a field of the wrong type); empty when it was."},
	}
	for _, n := range namedLocators {
		cols = append(cols, Column{n.column, String, n.comment})
	}
	return append(append(cols,
		Column{"reference_type", LowString, "The kind of entity reference_locator names (data.referenceType: policy, quote, invoice, …); empty when absent."},
		Column{"locator_keys", ArrayLowString, "Every top-level string member of data named locator or ending in Locator, sorted; parallel to locator_values. Lossless for event types without a column of their own."},
		Column{"locator_values", ArrayString, "The values of locator_keys, in the same order."},
		Column{"policy_locators", ArrayString, "Every policy the event concerns: data.policyLocators.items (or the complete list fetched by enrichment) and data.policyLocator, without duplicates."},
		Column{"policy_locators_complete", Bool, "Whether policy_locators is the complete list: true when the payload's list was complete, enrichment completed it, or the event has no list."},
		Column{"new_statuses", ArrayLowString, "policy.status.update: the statuses added (data.newStatuses.items)."},
		Column{"removed_statuses", ArrayLowString, "policy.status.update: the statuses removed (data.removedStatuses.items)."},
		Column{"cancellation_name", LowString, "Classic cancellation events: data.cancellationName, which tells a lapse from a manual cancellation."},
		Column{"reminder_name", LowString, "Classic policy.end.reminder: data.reminderName."},
		Column{"_source", LowString, commentSource},
		Column{"_position", String, "The event's Seq as the source orders it: an LSN (X/X) for postgres, otherwise the decimal Seq (for the API: the timestamp in ms)."},
		Column{"_version", UInt64, commentVersion},
		Column{"_ingested_at", Time, commentIngestedAt},
		Column{"timestamp_unix_ms", Int64, commentUnixMs},
		Column{"actor", String, "Who caused the event: user_locator (suite) or username (classic attributed stream), whichever is set; empty when neither is."},
	), billingColumns()...)
}

// DefaultSchema returns the tables and views the pipeline writes and creates.
// Each call returns a fresh copy that the caller may modify.
func DefaultSchema() Schema {
	return Schema{
		Tables: []Table{
			{
				Name:        TableEvents,
				Comment:     "One row per event of the stream, with the raw payload and the locators extracted from it. Read with FINAL to see each event once.",
				Columns:     eventColumns(),
				OrderBy:     []string{"tenant", "type", "timestamp", "locator"},
				PartitionBy: "toYYYYMM(timestamp)",
				Version:     "_version",
				Backfill:    map[string]string{"actor": "if(user_locator != '', user_locator, username)"},
			},
			{
				Name:    TableEventPolicies,
				Comment: "One row per (event, policy) for every policy an event concerns, for joins and look-ups by policy. Read with FINAL.",
				Columns: []Column{
					{"tenant", LowString, "The tenant the event belongs to."},
					{"policy_locator", String, "A policy the event concerns (an element of events.policy_locators)."},
					{"event_locator", String, "The event (events.locator)."},
					{"type", LowString, "The event type."},
					{"type_class", LowString, "The event family (events.type_class)."},
					{"timestamp", Time, "When the event happened (UTC, millisecond precision)."},
					{"flavor", LowString, "Where the event came from: suite, classic or postgres."},
					{"list_complete", Bool, "Whether the event's policy list is complete (events.policy_locators_complete); when false, the event concerns more policies than it has rows here."},
					{"_source", LowString, commentSource},
					{"_version", UInt64, commentVersion},
					{"_ingested_at", Time, commentIngestedAt},
					{"timestamp_unix_ms", Int64, commentUnixMs},
				},
				OrderBy:     []string{"tenant", "policy_locator", "event_locator"},
				PartitionBy: "toYYYYMM(timestamp)",
				Version:     "_version",
			},
			{
				Name:    TablePolicyStatusChanges,
				Comment: "One row per status a policy.status.update event added to or removed from a policy. Read with FINAL; policy_current_status applies them in order.",
				Columns: []Column{
					{"tenant", LowString, "The tenant the event belongs to."},
					{"policy_locator", String, "The policy whose statuses changed."},
					{"event_locator", String, "The event (events.locator)."},
					{"status", LowString, "The status: pending, inGap, expired, cancelled, cancelPending, onRisk, delinquent, doNotRenew, or any other value the source sent."},
					{"change", LowString, "added or removed."},
					{"timestamp", Time, "When the event happened (UTC, millisecond precision)."},
					{"type", LowString, "The event type (policy.status.update)."},
					{"list_complete", Bool, "Whether the event's list of added (or removed) statuses was complete (listCompleted)."},
					{"_source", LowString, commentSource},
					{"_version", UInt64, commentVersion},
					{"_ingested_at", Time, commentIngestedAt},
					{"timestamp_unix_ms", Int64, commentUnixMs},
				},
				OrderBy:     []string{"tenant", "policy_locator", "event_locator", "status", "change"},
				PartitionBy: "toYYYYMM(timestamp)",
				Version:     "_version",
			},
			rejectsTable(),
		},
		Views: defaultViews(),
	}
}

// ExampleQueries returns the SQL blocks of the "Example queries" section of a
// schema document (docs/schema.md), for tests that run them.
func ExampleQueries(doc string) []string {
	_, section, ok := strings.Cut(doc, "## Example queries")
	if !ok {
		return nil
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var out []string
	for {
		_, rest, ok := strings.Cut(section, "```sql\n")
		if !ok {
			return out
		}
		q, after, _ := strings.Cut(rest, "```")
		out = append(out, strings.TrimSpace(q))
		section = after
	}
}
