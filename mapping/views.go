package mapping

import "strings"

// View names of DefaultSchema, besides ViewPolicyCurrentStatus and
// ViewPolicyEndings.
const (
	ViewPolicyStatusHistory   = "policy_status_history"
	ViewPolicyStatusIntervals = "policy_status_intervals"
	ViewPolicies              = "policies"
	ViewDelinquencies         = "delinquencies"
	ViewInvoices              = "invoices"
)

// defaultViews are DefaultSchema's views, each after the views it reads.
//
// Every view orders events by (timestamp_unix_ms, event locator): exact to
// the millisecond on every server, and the locator (a ULID in the suite, a
// UUIDv7 in classic, both sorted by time) breaks ties as the event stream
// does. Each time a view shows comes as a readable column (x_at, whose type
// is the server's time type: whole seconds on legacy servers) and as an
// exact x_at_unix_ms Int64 column. The SQL runs on 18.16 and current
// servers: one JOIN per SELECT, no window functions, no lambda capturing a
// column of a joined SELECT (18.16 cannot resolve it: such values are passed
// as arrays instead), aliases on joined subqueries.
func defaultViews() []View {
	return []View{
		{
			Name:    ViewPolicyStatusHistory,
			Comment: "Every status change of every policy, both flavors: the suite's policy_status_changes, and classic statuses derived from classic events (policy.issue and reinstatements: onRisk; policy.end: expired; cancellation.issue, policy.cancel, policy.lapse: cancelled).",
			Query:   policyStatusHistorySQL,
		},
		{
			Name:    ViewPolicyCurrentStatus,
			Comment: "The current statuses of every policy that has a status history (both flavors): per (policy, status) the latest change in (timestamp_unix_ms, event_locator) order, keeping the added ones.",
			Query:   policyCurrentStatusSQL,
		},
		{
			Name:    ViewPolicyStatusIntervals,
			Comment: "One row per interval during which a policy held a status: from the change that added it to the change that removed it (NULL while it still holds).",
			Query:   policyStatusIntervalsSQL,
		},
		{
			Name:    ViewPolicyEndings,
			Comment: "One row per policy ending: expiry, manual_cancellation or lapse, from both flavors' events.",
			Query:   policyEndingsSQL,
		},
		{
			Name:    ViewPolicies,
			Comment: "One row per policy (both flavors): when it was first seen, issued and first invoiced, its current statuses, and how and when it ended.",
			Query:   policiesSQL,
		},
		{
			Name:    ViewDelinquencies,
			Comment: "One row per delinquency: suite billing delinquencies and classic grace periods (policy.gracePeriod); its policies, when it started, and its outcome (settled, lapsed or open) and when.",
			Query:   delinquenciesSQL,
		},
		{
			Name:    ViewInvoices,
			Comment: "One row per invoice (both flavors): its policies, whether it is an aggregate, when it was generated, due and settled.",
			Query:   invoicesSQL,
		},
	}
}

// classicStatusEvents are the classic event types that set a policy's
// status in policy_status_history, and the status each sets.
const classicStatusSQL = `multiIf(
            type IN ('policy.issue', 'policy.reinstate', 'reinstatement.issue'), 'onRisk',
            type = 'policy.end', 'expired',
            'cancelled')`

// policyStatusHistorySQL: the suite's changes as they are; a classic event
// that sets a status becomes one row per status of the classic vocabulary:
// the one it sets 'added', the others 'removed' (removing a status a policy
// does not hold changes nothing).
var policyStatusHistorySQL = strings.TrimSpace(`
SELECT
    tenant,
    policy_locator,
    event_locator,
    toString(status) AS status,
    toString(change) AS change,
    timestamp,
    timestamp_unix_ms,
    toString(type) AS event_type,
    list_complete
FROM {db}.policy_status_changes FINAL
UNION ALL
SELECT
    tenant,
    policy_locator,
    locator AS event_locator,
    status,
    if(status = new_status, 'added', 'removed') AS change,
    timestamp,
    timestamp_unix_ms,
    toString(type) AS event_type,
    toUInt8(1) AS list_complete
FROM
(
    SELECT
        tenant,
        policy_locator,
        locator,
        timestamp,
        timestamp_unix_ms,
        type,
        ` + classicStatusSQL + ` AS new_status
    FROM {db}.events FINAL
    WHERE type IN ('policy.issue', 'policy.reinstate', 'reinstatement.issue', 'policy.end',
                   'cancellation.issue', 'policy.cancel', 'policy.lapse')
      AND policy_locator != ''
)
ARRAY JOIN ['onRisk', 'expired', 'cancelled'] AS status
`)

// policyCurrentStatusSQL: inner query, per (policy, status), the last change
// in (timestamp_unix_ms, event_locator) order, an 'added' winning a tie
// inside one event; outer query, one row per policy with the statuses last
// added.
var policyCurrentStatusSQL = strings.TrimSpace(`
SELECT
    tenant,
    policy_locator,
    arraySort(groupArrayIf(status, last_change = 'added')) AS statuses,
    max(changed_at) AS last_change_at,
    max(changed_at_unix_ms) AS last_change_at_unix_ms,
    min(status_lists_complete) AS lists_complete
FROM
(
    SELECT
        tenant,
        policy_locator,
        status,
        argMax(change, (timestamp_unix_ms, event_locator, change = 'added')) AS last_change,
        max(timestamp) AS changed_at,
        max(timestamp_unix_ms) AS changed_at_unix_ms,
        min(toUInt8(list_complete)) AS status_lists_complete
    FROM {db}.policy_status_history
    GROUP BY tenant, policy_locator, status
)
GROUP BY tenant, policy_locator
`)

// policyStatusIntervalsSQL: per (policy, status) its changes sorted by
// (ms, event locator, added last); an interval starts at an 'added' change
// whose predecessor is a removal (or none) and ends at the first removal
// after it.
var policyStatusIntervalsSQL = strings.TrimSpace(`
SELECT
    tenant,
    policy_locator,
    status,
    tupleElement(changes[start], 4) AS valid_from,
    tupleElement(changes[start], 1) AS valid_from_unix_ms,
    if(stop = 0, NULL, tupleElement(changes[stop], 4)) AS valid_to,
    if(stop = 0, NULL, tupleElement(changes[stop], 1)) AS valid_to_unix_ms,
    tupleElement(changes[start], 2) AS from_event_locator,
    if(stop = 0, NULL, tupleElement(changes[stop], 2)) AS to_event_locator
FROM
(
    SELECT
        tenant,
        policy_locator,
        status,
        changes,
        start,
        arrayFirstIndex(j -> j > start AND tupleElement(changes[j], 3) = 0, arrayEnumerate(changes)) AS stop
    FROM
    (
        SELECT
            tenant,
            policy_locator,
            status,
            arraySort(groupArray((timestamp_unix_ms, event_locator, toUInt8(change = 'added'), timestamp))) AS changes
        FROM {db}.policy_status_history
        GROUP BY tenant, policy_locator, status
    )
    ARRAY JOIN arrayFilter(i -> tupleElement(changes[i], 3) = 1 AND (i = 1 OR tupleElement(changes[i - 1], 3) = 0),
        arrayEnumerate(changes)) AS start
)
`)

// policyEndingsSQL: the inner query picks the events that end a policy and
// expands each over the policies it concerns (ARRAY JOIN); the joined query
// collects, per policy, the (ms, locator) of suite delinquency lapses,
// because a suite lapse is an ordinary policy.cancellation.issue that
// follows a billing.delinquency.lapse of the same policy, at or after it in
// (ms, locator) order and within a day.
var policyEndingsSQL = strings.TrimSpace(`
SELECT
    tenant,
    ended_policy AS policy_locator,
    multiIf(
        event_type IN ('policy.end', 'policy.status.update'), 'expiry',
        event_type = 'policy.lapse', 'lapse',
        event_type = 'cancellation.issue' AND lower(cancellation_name) LIKE '%lapse%', 'lapse',
        event_type = 'policy.cancellation.issue'
            AND arrayExists((lapsed, ended) -> lapsed <= ended AND tupleElement(lapsed, 1) + 86400000 >= tupleElement(ended, 1),
                lapses, arrayResize([(recorded_at_unix_ms, event_locator)], length(lapses), (recorded_at_unix_ms, event_locator))), 'lapse',
        'manual_cancellation') AS kind,
    recorded_at,
    recorded_at_unix_ms,
    event_locator,
    event_type,
    flavor,
    cancellation_name,
    actor
FROM
(
    SELECT
        tenant,
        ended_policy,
        timestamp AS recorded_at,
        timestamp_unix_ms AS recorded_at_unix_ms,
        locator AS event_locator,
        toString(type) AS event_type,
        flavor,
        cancellation_name,
        actor
    FROM {db}.events FINAL
    ARRAY JOIN policy_locators AS ended_policy
    WHERE type IN ('policy.end', 'policy.lapse', 'cancellation.issue', 'policy.cancellation.issue')
       OR (type = 'policy.status.update' AND has(new_statuses, 'expired'))
) AS endings
{global}ANY LEFT JOIN
(
    SELECT
        tenant,
        policy_locator AS ended_policy,
        groupArray((timestamp_unix_ms, event_locator)) AS lapses
    FROM {db}.event_policies FINAL
    WHERE type = 'billing.delinquency.lapse'
    GROUP BY tenant, policy_locator
) AS lapses USING (tenant, ended_policy)
`)

// policiesSQL: per policy its events (event_policies), joined first with its
// endings as an array, from which those after its last reinstatement are
// kept and the earliest is its ending, then with its current statuses.
var policiesSQL = strings.TrimSpace(`
SELECT
    tenant,
    policy_locator,
    policy_flavor AS flavor,
    first_seen_at,
    first_seen_at_unix_ms,
    issued_at,
    issued_at_unix_ms,
    first_invoice_at,
    first_invoice_at_unix_ms,
    last_event_at_unix_ms,
    events,
    statuses,
    last_change_at_unix_ms AS status_changed_at_unix_ms,
    ending_kind,
    ended_at,
    ended_at_unix_ms,
    ending_event_locator
FROM
(
    SELECT
        tenant,
        policy_locator,
        policy_flavor,
        first_seen_at,
        first_seen_at_unix_ms,
        issued_at,
        issued_at_unix_ms,
        first_invoice_at,
        first_invoice_at_unix_ms,
        last_event_at_unix_ms,
        events,
        arraySort(arrayFilter((e, after) -> tupleElement(e, 1) > after,
            endings, arrayResize([reinstated_at_unix_ms], length(endings), reinstated_at_unix_ms))) AS live_endings,
        if(empty(live_endings), NULL, tupleElement(live_endings[1], 3)) AS ending_kind,
        if(empty(live_endings), NULL, tupleElement(live_endings[1], 4)) AS ended_at,
        if(empty(live_endings), NULL, tupleElement(live_endings[1], 1)) AS ended_at_unix_ms,
        if(empty(live_endings), NULL, tupleElement(live_endings[1], 2)) AS ending_event_locator
    FROM
    (
        SELECT
            tenant,
            policy_locator,
            any(flavor) AS policy_flavor,
            min(timestamp) AS first_seen_at,
            min(timestamp_unix_ms) AS first_seen_at_unix_ms,
            countIf(type IN ('policy.issue', 'policy.status.update')) AS issue_events,
            if(issue_events = 0, NULL, minIf(timestamp, type IN ('policy.issue', 'policy.status.update'))) AS issued_at,
            if(issue_events = 0, NULL, minIf(timestamp_unix_ms, type IN ('policy.issue', 'policy.status.update'))) AS issued_at_unix_ms,
            countIf(type IN ('billing.invoice.generate', 'invoice.issue')) AS invoice_events,
            if(invoice_events = 0, NULL, minIf(timestamp, type IN ('billing.invoice.generate', 'invoice.issue'))) AS first_invoice_at,
            if(invoice_events = 0, NULL, minIf(timestamp_unix_ms, type IN ('billing.invoice.generate', 'invoice.issue'))) AS first_invoice_at_unix_ms,
            maxIf(timestamp_unix_ms, type IN ('policy.reinstatement.issue', 'reinstatement.issue', 'policy.reinstate')) AS reinstated_at_unix_ms,
            max(timestamp_unix_ms) AS last_event_at_unix_ms,
            count() AS events
        FROM {db}.event_policies FINAL
        GROUP BY tenant, policy_locator
    ) AS facts
    {global}ANY LEFT JOIN
    (
        SELECT
            tenant,
            policy_locator,
            groupArray((recorded_at_unix_ms, event_locator, kind, recorded_at)) AS endings
        FROM {db}.policy_endings
        GROUP BY tenant, policy_locator
    ) AS ended USING (tenant, policy_locator)
) AS policy_facts
{global}ANY LEFT JOIN
(
    SELECT tenant, policy_locator, statuses, last_change_at_unix_ms
    FROM {db}.policy_current_status
) AS current USING (tenant, policy_locator)
`)

// delinquenciesSQL: suite delinquencies from their own events (per
// delinquency its most complete policy list, its start, billing.delinquency.create
// or its first event when the stream began later, and its latest settle or
// lapse); classic ones from policy.gracePeriod, which opens the grace period
// of one invoice of one policy: settled by the first payment.pay of that
// invoice, lapsed by the first lapse of that policy (policy_endings),
// whichever comes first at or after the start.
var delinquenciesSQL = strings.TrimSpace(`
SELECT
    tenant,
    delinquency_locator,
    flavor,
    policy_list AS policy_locators,
    policy_list_complete AS policy_locators_complete,
    '' AS invoice_locator,
    started_at,
    started_at_unix_ms,
    multiIf(outcome_type = 'billing.delinquency.lapse', 'lapsed',
            outcome_type = 'billing.delinquency.settle', 'settled',
            'open') AS outcome,
    if(outcome_type = '', NULL, last_outcome_at) AS outcome_at,
    if(outcome_type = '', NULL, last_outcome_at_unix_ms) AS outcome_at_unix_ms,
    if(outcome_type = '', NULL, last_outcome_event_locator) AS outcome_event_locator
FROM
(
    SELECT
        tenant,
        delinquency_locator,
        any(flavor) AS flavor,
        argMax(policy_locators, (policy_locators_complete, length(policy_locators), timestamp_unix_ms, locator)) AS policy_list,
        max(policy_locators_complete) AS policy_list_complete,
        countIf(type = 'billing.delinquency.create') AS creates,
        if(creates = 0, min(timestamp), minIf(timestamp, type = 'billing.delinquency.create')) AS started_at,
        if(creates = 0, min(timestamp_unix_ms), minIf(timestamp_unix_ms, type = 'billing.delinquency.create')) AS started_at_unix_ms,
        toString(argMaxIf(type, (timestamp_unix_ms, locator), type IN ('billing.delinquency.settle', 'billing.delinquency.lapse'))) AS outcome_type,
        argMaxIf(timestamp, (timestamp_unix_ms, locator), type IN ('billing.delinquency.settle', 'billing.delinquency.lapse')) AS last_outcome_at,
        argMaxIf(timestamp_unix_ms, (timestamp_unix_ms, locator), type IN ('billing.delinquency.settle', 'billing.delinquency.lapse')) AS last_outcome_at_unix_ms,
        argMaxIf(locator, (timestamp_unix_ms, locator), type IN ('billing.delinquency.settle', 'billing.delinquency.lapse')) AS last_outcome_event_locator
    FROM {db}.events FINAL
    WHERE delinquency_locator != '' AND type IN ('billing.delinquency.create', 'billing.delinquency.settle', 'billing.delinquency.lapse')
    GROUP BY tenant, delinquency_locator
)
UNION ALL
SELECT
    tenant,
    delinquency_locator,
    flavor,
    [policy_locator] AS policy_locators,
    toUInt8(1) AS policy_locators_complete,
    invoice_locator,
    started_at,
    started_at_unix_ms,
    multiIf(notEmpty(lapses_after) AND (empty(pays_after) OR lapses_after[1] < pays_after[1]), 'lapsed',
            notEmpty(pays_after), 'settled',
            'open') AS outcome,
    multiIf(outcome = 'lapsed', tupleElement(lapses_after[1], 3), outcome = 'settled', tupleElement(pays_after[1], 3), NULL) AS outcome_at,
    multiIf(outcome = 'lapsed', tupleElement(lapses_after[1], 1), outcome = 'settled', tupleElement(pays_after[1], 1), NULL) AS outcome_at_unix_ms,
    multiIf(outcome = 'lapsed', tupleElement(lapses_after[1], 2), outcome = 'settled', tupleElement(pays_after[1], 2), NULL) AS outcome_event_locator
FROM
(
    SELECT
        tenant,
        delinquency_locator,
        flavor,
        policy_locator,
        invoice_locator,
        started_at,
        started_at_unix_ms,
        pays_after,
        arraySort(arrayFilter((l, s) -> tupleElement(l, 1) >= s,
            lapses, arrayResize([started_at_unix_ms], length(lapses), started_at_unix_ms))) AS lapses_after
    FROM
    (
        SELECT
            tenant,
            delinquency_locator,
            flavor,
            policy_locator,
            invoice_locator,
            started_at,
            started_at_unix_ms,
            arraySort(arrayFilter((p, s) -> tupleElement(p, 1) >= s,
                pays, arrayResize([started_at_unix_ms], length(pays), started_at_unix_ms))) AS pays_after
        FROM
        (
            SELECT
                tenant,
                locator AS delinquency_locator,
                flavor,
                policy_locator,
                invoice_locator,
                timestamp AS started_at,
                timestamp_unix_ms AS started_at_unix_ms
            FROM {db}.events FINAL
            WHERE type = 'policy.gracePeriod'
        ) AS grace
        {global}ANY LEFT JOIN
        (
            SELECT tenant, invoice_locator, groupArray((timestamp_unix_ms, locator, timestamp)) AS pays
            FROM {db}.events FINAL
            WHERE type = 'payment.pay' AND invoice_locator != ''
            GROUP BY tenant, invoice_locator
        ) AS payments USING (tenant, invoice_locator)
    ) AS paid
    {global}ANY LEFT JOIN
    (
        SELECT tenant, policy_locator, groupArray((recorded_at_unix_ms, event_locator, recorded_at)) AS lapses
        FROM {db}.policy_endings
        WHERE kind = 'lapse'
        GROUP BY tenant, policy_locator
    ) AS lapsed USING (tenant, policy_locator)
)
`)

// invoicesSQL: per invoice (both flavors) its events: the most complete
// policy list, the invoice type, generation (the suite's generateTime, or
// the classic invoice.issue), and its state from the latest of its
// settlement events.
var invoicesSQL = strings.TrimSpace(`
SELECT
    tenant,
    invoice_locator,
    invoice_flavor AS flavor,
    account AS account_locator,
    policy_list AS policy_locators,
    length(policy_list) AS policy_count,
    policy_list_complete AS policy_locators_complete,
    kind AS invoice_type,
    toUInt8(kind = 'aggregate') AS is_aggregate,
    generated_at_unix_ms,
    if(generated_at_unix_ms IS NULL, NULL, toDateTime(intDiv(generated_at_unix_ms, 1000), 'UTC')) AS generated_at,
    multiIf(last_state_type IN ('billing.invoice.settle', 'payment.pay'), 'settled',
            last_state_type = 'invoice.invalidate', 'invalidated',
            last_state_type = 'invoice.writtenOff', 'written_off',
            'open') AS state,
    if(last_state_type IN ('billing.invoice.settle', 'payment.pay'), last_state_at_unix_ms, NULL) AS settled_at_unix_ms,
    past_due_at_unix_ms
FROM
(
    SELECT
        tenant,
        invoice_locator,
        any(flavor) AS invoice_flavor,
        anyIf(account_locator, account_locator != '') AS account,
        argMax(policy_locators, (policy_locators_complete, length(policy_locators), timestamp_unix_ms, locator)) AS policy_list,
        max(policy_locators_complete) AS policy_list_complete,
        toString(anyIf(invoice_type, invoice_type != '')) AS kind,
        countIf(type IN ('billing.invoice.generate', 'invoice.issue')) AS generations,
        if(generations = 0, NULL, minIf(ifNull(generate_time_unix_ms, timestamp_unix_ms), type IN ('billing.invoice.generate', 'invoice.issue'))) AS generated_at_unix_ms,
        toString(argMaxIf(type, (timestamp_unix_ms, locator), type IN ('billing.invoice.settle', 'billing.invoice.unsettle', 'payment.pay', 'invoice.invalidate', 'invoice.writtenOff'))) AS last_state_type,
        argMaxIf(timestamp_unix_ms, (timestamp_unix_ms, locator), type IN ('billing.invoice.settle', 'billing.invoice.unsettle', 'payment.pay', 'invoice.invalidate', 'invoice.writtenOff')) AS last_state_at_unix_ms,
        if(countIf(type = 'invoice.pastDue') = 0, NULL, minIf(timestamp_unix_ms, type = 'invoice.pastDue')) AS past_due_at_unix_ms
    FROM {db}.events FINAL
    WHERE invoice_locator != '' AND (type LIKE 'billing.invoice.%' OR type IN ('invoice.issue', 'invoice.invalidate', 'invoice.pastDue', 'invoice.writtenOff', 'payment.pay'))
    GROUP BY tenant, invoice_locator
)
`)
