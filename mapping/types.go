package mapping

import "strings"

// Type classes: the bounded set of values TypeClass returns. Metrics use them
// as a label, so the set must stay small and fixed.
const (
	ClassPolicy          = "policy"
	ClassQuote           = "quote"
	ClassTransaction     = "transaction"
	ClassAccount         = "account"
	ClassCancellation    = "cancellation"
	ClassEndorsement     = "endorsement"
	ClassRenewal         = "renewal"
	ClassReinstatement   = "reinstatement"
	ClassInvoice         = "invoice"
	ClassPayment         = "payment"
	ClassDelinquency     = "delinquency"
	ClassBilling         = "billing"
	ClassClaim           = "claim"
	ClassPolicyholder    = "policyholder"
	ClassContact         = "contact"
	ClassDocument        = "document"
	ClassMigration       = "migration"
	ClassMoratorium      = "moratorium"
	ClassProducer        = "producer"
	ClassUserAssociation = "user_association"
	ClassNumbering       = "numbering"
	ClassOther           = "other"
)

// Classes lists every value TypeClass can return, in a stable order.
var Classes = []string{
	ClassPolicy, ClassQuote, ClassTransaction, ClassAccount, ClassCancellation,
	ClassEndorsement, ClassRenewal, ClassReinstatement, ClassInvoice, ClassPayment,
	ClassDelinquency, ClassBilling, ClassClaim, ClassPolicyholder, ClassContact,
	ClassDocument, ClassMigration, ClassMoratorium, ClassProducer,
	ClassUserAssociation, ClassNumbering, ClassOther,
}

// TypeClass returns the family of an event type, one of Classes: for example
// "billing.invoice.generate" and the classic "invoice.issue" are both
// "invoice", "policy.quote.price" is "quote", the suite's policy transactions
// ("policy.cancellation.issue", "policy.change.issue", …) are "transaction".
// A type of no known family is "other". TypeClass only looks at the name, so
// it classifies types it does not know (KnownType) too.
func TypeClass(eventType string) string {
	if strings.HasSuffix(eventType, ".numberAssignmentFailed") {
		return ClassNumbering
	}
	first, rest, _ := strings.Cut(eventType, ".")
	second, _, _ := strings.Cut(rest, ".")
	switch first {
	case "policy":
		switch second {
		case "quote":
			return ClassQuote
		case "account":
			return ClassAccount
		case "change", "renewal", "cancellation", "reinstatement", "reversal":
			return ClassTransaction
		}
		return ClassPolicy
	case "billing":
		switch second {
		case "invoice":
			return ClassInvoice
		case "payment":
			return ClassPayment
		case "delinquency":
			return ClassDelinquency
		}
		return ClassBilling
	case "term":
		return ClassPolicy
	case "quote":
		return ClassQuote
	case "account":
		return ClassAccount
	case "cancellation":
		return ClassCancellation
	case "endorsement":
		return ClassEndorsement
	case "renewal":
		return ClassRenewal
	case "reinstatement":
		return ClassReinstatement
	case "invoice":
		return ClassInvoice
	case "payment":
		return ClassPayment
	case "disbursement":
		return ClassBilling
	case "claim", "subClaim", "fnol":
		return ClassClaim
	case "policyholder":
		return ClassPolicyholder
	case "contact":
		return ClassContact
	case "document":
		return ClassDocument
	case "migration":
		return ClassMigration
	case "moratorium":
		return ClassMoratorium
	case "producers":
		return ClassProducer
	case "userAssociation":
		return ClassUserAssociation
	}
	return ClassOther
}

// KnownType reports whether the mapping knows eventType: it is one of the
// suite's published event types (the OpenAPI *EventTypeDefinitions) or one of
// the classic event types.
func KnownType(eventType string) bool {
	_, ok := knownTypes[eventType]
	return ok
}

// KnownTypes returns every known event type, suite first then classic, each
// list sorted.
func KnownTypes() []string {
	out := make([]string, 0, len(suiteTypes)+len(classicTypes))
	out = append(out, suiteTypes...)
	return append(out, classicTypes...)
}

var knownTypes = func() map[string]struct{} {
	m := make(map[string]struct{}, len(suiteTypes)+len(classicTypes))
	for _, t := range suiteTypes {
		m[t] = struct{}{}
	}
	for _, t := range classicTypes {
		m[t] = struct{}{}
	}
	return m
}()

// suiteTypes are the event types of the suite's OpenAPI *EventTypeDefinitions
// (the vendor's published document, subset in testdata/suite_event_types.json).
var suiteTypes = []string{
	"account.config.migration.failed",
	"account.numberAssignmentFailed",
	"billing.creditdistribution.create",
	"billing.creditdistribution.distribute",
	"billing.creditdistribution.reverse",
	"billing.delinquency.create",
	"billing.delinquency.delinquencyevent.activate",
	"billing.delinquency.delinquencyevent.cancel",
	"billing.delinquency.delinquencyevent.create",
	"billing.delinquency.delinquencyevent.trigger",
	"billing.delinquency.lapse",
	"billing.delinquency.settle",
	"billing.disbursement.anonymize",
	"billing.disbursement.approve",
	"billing.disbursement.create",
	"billing.disbursement.execute",
	"billing.disbursement.reject",
	"billing.disbursement.reverse",
	"billing.hold.activate",
	"billing.hold.create",
	"billing.hold.discard",
	"billing.hold.release",
	"billing.hold.reset",
	"billing.hold.validate",
	"billing.installmentlattice.create",
	"billing.invoice.autopay",
	"billing.invoice.autopayfailed",
	"billing.invoice.generate",
	"billing.invoice.settle",
	"billing.invoice.unsettle",
	"billing.payment.anonymize",
	"billing.payment.cancel",
	"billing.payment.create",
	"billing.payment.distribute",
	"billing.payment.execute",
	"billing.payment.fail",
	"billing.payment.post",
	"billing.payment.request",
	"billing.payment.reverse",
	"billing.payment.validationfailed",
	"billing.shortfallcredit.create",
	"billing.shortfallcredit.distribute",
	"billing.shortfallcredit.reverse",
	"billing.writeoff.create",
	"billing.writeoff.distribute",
	"billing.writeoff.reverse",
	"claim.fnol.anonymize",
	"claim.fnol.complete",
	"claim.fnol.create",
	"claim.fnol.discard",
	"claim.fnol.onclaim",
	"claim.fnol.reject",
	"claim.fnol.update",
	"claim.fnol.validate",
	"contact.anonymized",
	"contact.created",
	"contact.merged",
	"contact.validated",
	"disbursement.numberAssignmentFailed",
	"document.failed",
	"document.ready",
	"fnol.numberAssignmentFailed",
	"invoice.numberAssignmentFailed",
	"migration.error",
	"migration.fail",
	"migration.finish",
	"migration.patch",
	"migration.pause",
	"migration.recover",
	"migration.resume",
	"migration.start",
	"moratorium.create",
	"moratorium.effective",
	"moratorium.end",
	"moratorium.update",
	"payment.numberAssignmentFailed",
	"policy.account.anonymize",
	"policy.account.create",
	"policy.account.discard",
	"policy.account.update",
	"policy.account.validate",
	"policy.anonymize",
	"policy.cancellation.accept",
	"policy.cancellation.create",
	"policy.cancellation.discard",
	"policy.cancellation.issue",
	"policy.cancellation.manualUnderwrite",
	"policy.cancellation.price",
	"policy.cancellation.refuse",
	"policy.cancellation.reset",
	"policy.cancellation.underwrite",
	"policy.cancellation.update",
	"policy.cancellation.validate",
	"policy.change.accept",
	"policy.change.create",
	"policy.change.discard",
	"policy.change.issue",
	"policy.change.manualUnderwrite",
	"policy.change.price",
	"policy.change.refuse",
	"policy.change.reset",
	"policy.change.underwrite",
	"policy.change.validate",
	"policy.config.migration.failed",
	"policy.migrateOnRenewal.disable",
	"policy.migrateOnRenewal.enable",
	"policy.numberAssignmentFailed",
	"policy.quote.accept",
	"policy.quote.anonymize",
	"policy.quote.create",
	"policy.quote.discard",
	"policy.quote.issue",
	"policy.quote.manualunderwrite",
	"policy.quote.policyNumberAssigned",
	"policy.quote.policyNumberRequested",
	"policy.quote.price",
	"policy.quote.refuse",
	"policy.quote.reset",
	"policy.quote.staticdata.add",
	"policy.quote.staticdata.anonymize",
	"policy.quote.staticdata.replace",
	"policy.quote.staticdata.update",
	"policy.quote.underwrite",
	"policy.quote.update",
	"policy.quote.validate",
	"policy.reinstatement.accept",
	"policy.reinstatement.create",
	"policy.reinstatement.discard",
	"policy.reinstatement.issue",
	"policy.reinstatement.manualUnderwrite",
	"policy.reinstatement.price",
	"policy.reinstatement.refuse",
	"policy.reinstatement.reset",
	"policy.reinstatement.underwrite",
	"policy.reinstatement.update",
	"policy.reinstatement.validate",
	"policy.renewal.accept",
	"policy.renewal.create",
	"policy.renewal.discard",
	"policy.renewal.issue",
	"policy.renewal.manualUnderwrite",
	"policy.renewal.price",
	"policy.renewal.refuse",
	"policy.renewal.reset",
	"policy.renewal.underwrite",
	"policy.renewal.update",
	"policy.renewal.validate",
	"policy.reversal.accept",
	"policy.reversal.create",
	"policy.reversal.discard",
	"policy.reversal.issue",
	"policy.reversal.manualUnderwrite",
	"policy.reversal.price",
	"policy.reversal.refuse",
	"policy.reversal.reset",
	"policy.reversal.underwrite",
	"policy.reversal.update",
	"policy.reversal.validate",
	"policy.staticdata.add",
	"policy.staticdata.anonymize",
	"policy.staticdata.replace",
	"policy.staticdata.update",
	"policy.status.update",
	"producers.producer.create",
	"producers.producer.discard",
	"producers.producer.retire",
	"producers.producer.suspend",
	"producers.producer.unsuspend",
	"producers.producer.update",
	"producers.producer.validate",
	"producers.producerappointment.create",
	"producers.producerappointment.discard",
	"producers.producerappointment.update",
	"producers.producerappointment.validate",
	"producers.producercode.create",
	"producers.producercode.discard",
	"producers.producercode.numberAssignmentFailed",
	"producers.producercode.retire",
	"producers.producercode.suspend",
	"producers.producercode.unsuspend",
	"producers.producercode.update",
	"producers.producercode.validate",
	"producers.producerlicense.create",
	"producers.producerlicense.discard",
	"producers.producerlicense.update",
	"producers.producerlicense.validate",
	"quote.config.migration.failed",
	"quote.numberAssignmentFailed",
	"term.numberAssignmentFailed",
	"userAssociation.associated",
	"userAssociation.completed",
	"userAssociation.disassociated",
	"userAssociation.uncompleted",
}

// classicTypes are the classic (Socotra Core) event types: the families named
// in the classic event-stream documentation and the actions each one has.
var classicTypes = []string{
	"cancellation.create",
	"cancellation.effective",
	"cancellation.invalidate",
	"cancellation.issue",
	"cancellation.rescind",
	"cancellation.update",
	"claim.create",
	"claim.update",
	"endorsement.accept",
	"endorsement.create",
	"endorsement.discard",
	"endorsement.invalidate",
	"endorsement.issue",
	"endorsement.price",
	"endorsement.update",
	"invoice.invalidate",
	"invoice.issue",
	"invoice.pastDue",
	"invoice.writtenOff",
	"payment.pay",
	"policy.cancel",
	"policy.create",
	"policy.discard",
	"policy.end",
	"policy.end.reminder",
	"policy.endorse",
	"policy.gracePeriod",
	"policy.gracePeriod.update",
	"policy.issue",
	"policy.lapse",
	"policy.reinstate",
	"policy.renew",
	"policy.update",
	"policyholder.create",
	"policyholder.update",
	"reinstatement.accept",
	"reinstatement.create",
	"reinstatement.discard",
	"reinstatement.invalidate",
	"reinstatement.issue",
	"reinstatement.price",
	"reinstatement.update",
	"renewal.accept",
	"renewal.create",
	"renewal.discard",
	"renewal.invalidate",
	"renewal.issue",
	"renewal.price",
	"renewal.update",
	"subClaim.create",
	"subClaim.update",
}
