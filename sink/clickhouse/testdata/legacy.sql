CREATE DATABASE IF NOT EXISTS tributary;

CREATE TABLE IF NOT EXISTS tributary.events
(
    locator String COMMENT 'The event\'s identifier: the suite\'s locator (a ULID) or the classic id.',
    request_id String COMMENT 'Suite: the API request that caused the event (requestId); empty for classic.',
    user_locator String COMMENT 'Suite: the user who caused the event (userLocator, a UUID); empty for classic.',
    username String COMMENT 'Classic attributed stream: the user who caused the event; empty otherwise.',
    transaction_id String COMMENT 'Classic webhook: transactionId; empty otherwise.',
    tenant String COMMENT 'The tenant the event belongs to.',
    type String COMMENT 'The event type, such as policy.status.update or invoice.issue.',
    type_class String COMMENT 'The event family (policy, quote, transaction, invoice, payment, delinquency, billing, cancellation, claim, …; other when unknown).',
    known_type UInt8 COMMENT 'Whether the mapping knows the event type (a published suite type or a classic type).',
    timestamp DateTime('UTC') COMMENT 'When the event happened (UTC, millisecond precision).',
    timestamp_ms UInt16 COMMENT 'Milliseconds (0-999) of timestamp, which holds whole seconds: timestamp + timestamp_ms ms is the exact time.',
    flavor String COMMENT 'Where the event came from: suite, classic or postgres.',
    data String COMMENT 'The event\'s payload, raw JSON exactly as delivered.',
    parse_error String COMMENT 'Why data could not be fully read (not an object, malformed JSON, a field of the wrong type); empty when it was.',
    policy_locator String COMMENT 'The policy the event is about (data.policyLocator), or the policy a reference or numbering event names; empty when absent.',
    quote_locator String COMMENT 'The quote (data.quoteLocator, or a quote reference); empty when absent.',
    transaction_locator String COMMENT 'The policy transaction (data.transactionLocator, or a transaction reference); empty when absent.',
    invoice_locator String COMMENT 'The invoice (data.invoiceLocator, or an invoice reference); empty when absent.',
    payment_locator String COMMENT 'The payment (data.paymentLocator, or a payment reference); empty when absent.',
    delinquency_locator String COMMENT 'The delinquency (data.delinquencyLocator); empty when absent.',
    account_locator String COMMENT 'The billing account (data.accountLocator, or an account reference); empty when absent.',
    writeoff_locator String COMMENT 'The write-off (data.writeOffLocator); empty when absent.',
    cancellation_locator String COMMENT 'The classic cancellation (data.cancellationLocator); empty when absent.',
    endorsement_locator String COMMENT 'The classic endorsement (data.endorsementLocator); empty when absent.',
    renewal_locator String COMMENT 'The classic renewal (data.renewalLocator); empty when absent.',
    reinstatement_locator String COMMENT 'The classic reinstatement (data.reinstatementLocator); empty when absent.',
    claim_locator String COMMENT 'The claim (data.claimLocator); empty when absent.',
    sub_claim_locator String COMMENT 'The classic sub-claim (data.subClaimLocator); empty when absent.',
    policyholder_locator String COMMENT 'The classic policyholder (data.policyholderLocator); empty when absent.',
    fnol_locator String COMMENT 'The first notice of loss (data.fnolLocator, or data.locator of claim.fnol.* events); empty when absent.',
    disbursement_locator String COMMENT 'The disbursement (data.disbursementLocator); empty when absent.',
    document_locator String COMMENT 'The document (data.documentLocator); empty when absent.',
    reference_locator String COMMENT 'The entity a document or user-association event refers to (data.referenceLocator); its kind is reference_type.',
    reference_type String COMMENT 'The kind of entity reference_locator names (data.referenceType: policy, quote, invoice, …); empty when absent.',
    locator_keys Array(String) COMMENT 'Every top-level string member of data named locator or ending in Locator, sorted; parallel to locator_values. Lossless for event types without a column of their own.',
    locator_values Array(String) COMMENT 'The values of locator_keys, in the same order.',
    policy_locators Array(String) COMMENT 'Every policy the event concerns: data.policyLocators.items (or the complete list fetched by enrichment) and data.policyLocator, without duplicates.',
    policy_locators_complete UInt8 COMMENT 'Whether policy_locators is the complete list: true when the payload\'s list was complete, enrichment completed it, or the event has no list.',
    new_statuses Array(String) COMMENT 'policy.status.update: the statuses added (data.newStatuses.items).',
    removed_statuses Array(String) COMMENT 'policy.status.update: the statuses removed (data.removedStatuses.items).',
    cancellation_name String COMMENT 'Classic cancellation events: data.cancellationName, which tells a lapse from a manual cancellation.',
    reminder_name String COMMENT 'Classic policy.end.reminder: data.reminderName.',
    _source String COMMENT 'Name of the pipeline that wrote the row (--pipeline).',
    _position String COMMENT 'The event\'s Seq as the source orders it: an LSN (X/X) for postgres, otherwise the decimal Seq (for the API: the timestamp in ms).',
    _version UInt64 COMMENT 'ReplacingMergeTree version: the event\'s Seq times two, plus one when the row\'s policy list is complete. Deterministic, so a replayed event collapses onto itself and an enriched row wins.',
    _ingested_at DateTime('UTC') COMMENT 'When the pipeline mapped the row (wall clock). Informational only: it is no part of any key or version.',
    _ingested_at_ms UInt16 COMMENT 'Milliseconds (0-999) of _ingested_at, which holds whole seconds: _ingested_at + _ingested_at_ms ms is the exact time.',
    timestamp_unix_ms Int64 COMMENT 'timestamp as milliseconds since 1970-01-01 UTC: exact on every server (legacy timestamp holds whole seconds), the column to order, compare and subtract times by.',
    actor String COMMENT 'Who caused the event: user_locator (suite) or username (classic attributed stream), whichever is set; empty when neither is.',
    invoice_type String COMMENT 'billing.invoice.* events: data.invoiceType, normal or aggregate (an aggregate invoice bills several policies at once); empty for other events.',
    generate_time Nullable(DateTime('UTC')) COMMENT 'billing.invoice.generate: data.generateTime, when the invoice was generated; NULL for other events.',
    generate_time_ms UInt16 COMMENT 'Milliseconds (0-999) of generate_time, which holds whole seconds: generate_time + generate_time_ms ms is the exact time.',
    generate_time_unix_ms Nullable(Int64) COMMENT 'generate_time as milliseconds since 1970-01-01 UTC (exact on every server); NULL when generate_time is.',
    autopay_time Nullable(DateTime('UTC')) COMMENT 'billing.invoice.autopay and autopayfailed: data.autopayTime, when autopay ran; NULL for other events.',
    autopay_time_ms UInt16 COMMENT 'Milliseconds (0-999) of autopay_time, which holds whole seconds: autopay_time + autopay_time_ms ms is the exact time.',
    autopay_time_unix_ms Nullable(Int64) COMMENT 'autopay_time as milliseconds since 1970-01-01 UTC (exact on every server); NULL when autopay_time is.'
)
ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, type, timestamp, timestamp_ms, locator);

CREATE TABLE IF NOT EXISTS tributary.event_policies
(
    tenant String COMMENT 'The tenant the event belongs to.',
    policy_locator String COMMENT 'A policy the event concerns (an element of events.policy_locators).',
    event_locator String COMMENT 'The event (events.locator).',
    type String COMMENT 'The event type.',
    type_class String COMMENT 'The event family (events.type_class).',
    timestamp DateTime('UTC') COMMENT 'When the event happened (UTC, millisecond precision).',
    timestamp_ms UInt16 COMMENT 'Milliseconds (0-999) of timestamp, which holds whole seconds: timestamp + timestamp_ms ms is the exact time.',
    flavor String COMMENT 'Where the event came from: suite, classic or postgres.',
    list_complete UInt8 COMMENT 'Whether the event\'s policy list is complete (events.policy_locators_complete); when false, the event concerns more policies than it has rows here.',
    _source String COMMENT 'Name of the pipeline that wrote the row (--pipeline).',
    _version UInt64 COMMENT 'ReplacingMergeTree version: the event\'s Seq times two, plus one when the row\'s policy list is complete. Deterministic, so a replayed event collapses onto itself and an enriched row wins.',
    _ingested_at DateTime('UTC') COMMENT 'When the pipeline mapped the row (wall clock). Informational only: it is no part of any key or version.',
    _ingested_at_ms UInt16 COMMENT 'Milliseconds (0-999) of _ingested_at, which holds whole seconds: _ingested_at + _ingested_at_ms ms is the exact time.',
    timestamp_unix_ms Int64 COMMENT 'timestamp as milliseconds since 1970-01-01 UTC: exact on every server (legacy timestamp holds whole seconds), the column to order, compare and subtract times by.'
)
ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, policy_locator, event_locator);

CREATE TABLE IF NOT EXISTS tributary.policy_status_changes
(
    tenant String COMMENT 'The tenant the event belongs to.',
    policy_locator String COMMENT 'The policy whose statuses changed.',
    event_locator String COMMENT 'The event (events.locator).',
    status String COMMENT 'The status: pending, inGap, expired, cancelled, cancelPending, onRisk, delinquent, doNotRenew, or any other value the source sent.',
    change String COMMENT 'added or removed.',
    timestamp DateTime('UTC') COMMENT 'When the event happened (UTC, millisecond precision).',
    timestamp_ms UInt16 COMMENT 'Milliseconds (0-999) of timestamp, which holds whole seconds: timestamp + timestamp_ms ms is the exact time.',
    type String COMMENT 'The event type (policy.status.update).',
    list_complete UInt8 COMMENT 'Whether the event\'s list of added (or removed) statuses was complete (listCompleted).',
    _source String COMMENT 'Name of the pipeline that wrote the row (--pipeline).',
    _version UInt64 COMMENT 'ReplacingMergeTree version: the event\'s Seq times two, plus one when the row\'s policy list is complete. Deterministic, so a replayed event collapses onto itself and an enriched row wins.',
    _ingested_at DateTime('UTC') COMMENT 'When the pipeline mapped the row (wall clock). Informational only: it is no part of any key or version.',
    _ingested_at_ms UInt16 COMMENT 'Milliseconds (0-999) of _ingested_at, which holds whole seconds: _ingested_at + _ingested_at_ms ms is the exact time.',
    timestamp_unix_ms Int64 COMMENT 'timestamp as milliseconds since 1970-01-01 UTC: exact on every server (legacy timestamp holds whole seconds), the column to order, compare and subtract times by.'
)
ENGINE = ReplacingMergeTree(_version)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, policy_locator, event_locator, status, change);

CREATE TABLE IF NOT EXISTS tributary._tributary_rejects
(
    _source String COMMENT 'Name of the pipeline that wrote the row (--pipeline).',
    flavor String COMMENT 'Where the event came from: suite, classic or postgres.',
    kind String COMMENT 'Why, in a word: missing_field, invalid_json (not JSON, or not the shape of an event), bad_time (the source could not read it), refused (ClickHouse refused its rows), other.',
    reason String COMMENT 'Why, in full: the source\'s or ClickHouse\'s message.',
    event_locator String COMMENT 'The event\'s locator, when it had one.',
    event_type String COMMENT 'The event\'s type, when it had one.',
    tenant String COMMENT 'The tenant the event belongs to.',
    event_time String COMMENT 'The event\'s time as read (RFC 3339, UTC, milliseconds), empty when it had none. Text, since a time the server cannot hold is one reason to be here.',
    source_position String COMMENT 'Where the source stood after the batch that held the event (a paging token or an LSN): resuming there reads what follows it.',
    _position String COMMENT 'The event\'s Seq as the source orders it, as in events._position.',
    raw String COMMENT 'The event\'s raw bytes as the source delivered them (for an event ClickHouse refused: the event as JSON), for review and replay.',
    _version UInt64 COMMENT 'The event\'s Seq: a replayed reject collapses onto itself.',
    _ingested_at DateTime('UTC') COMMENT 'When the pipeline mapped the row (wall clock). Informational only: it is no part of any key or version.',
    _ingested_at_ms UInt16 COMMENT 'Milliseconds (0-999) of _ingested_at, which holds whole seconds: _ingested_at + _ingested_at_ms ms is the exact time.'
)
ENGINE = ReplacingMergeTree(_version)
ORDER BY (_source, event_locator, cityHash64(raw));

CREATE VIEW IF NOT EXISTS tributary.policy_status_history AS
WITH 'tributary-view-efa831c1159c3c94' AS _tributary_definition
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
FROM tributary.policy_status_changes FINAL
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
        multiIf(
            type IN ('policy.issue', 'policy.reinstate', 'reinstatement.issue'), 'onRisk',
            type = 'policy.end', 'expired',
            'cancelled') AS new_status
    FROM tributary.events FINAL
    WHERE type IN ('policy.issue', 'policy.reinstate', 'reinstatement.issue', 'policy.end',
                   'cancellation.issue', 'policy.cancel', 'policy.lapse')
      AND policy_locator != ''
)
ARRAY JOIN ['onRisk', 'expired', 'cancelled'] AS status;

CREATE VIEW IF NOT EXISTS tributary.policy_current_status AS
WITH 'tributary-view-e8b931e5cf698f33' AS _tributary_definition
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
    FROM tributary.policy_status_history
    GROUP BY tenant, policy_locator, status
)
GROUP BY tenant, policy_locator;

CREATE VIEW IF NOT EXISTS tributary.policy_status_intervals AS
WITH 'tributary-view-a448b345247de33a' AS _tributary_definition
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
        FROM tributary.policy_status_history
        GROUP BY tenant, policy_locator, status
    )
    ARRAY JOIN arrayFilter(i -> tupleElement(changes[i], 3) = 1 AND (i = 1 OR tupleElement(changes[i - 1], 3) = 0),
        arrayEnumerate(changes)) AS start
);

CREATE VIEW IF NOT EXISTS tributary.policy_endings AS
WITH 'tributary-view-a1e61b84fa63a399' AS _tributary_definition
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
    FROM tributary.events FINAL
    ARRAY JOIN policy_locators AS ended_policy
    WHERE type IN ('policy.end', 'policy.lapse', 'cancellation.issue', 'policy.cancellation.issue')
       OR (type = 'policy.status.update' AND has(new_statuses, 'expired'))
) AS endings
ANY LEFT JOIN
(
    SELECT
        tenant,
        policy_locator AS ended_policy,
        groupArray((timestamp_unix_ms, event_locator)) AS lapses
    FROM tributary.event_policies FINAL
    WHERE type = 'billing.delinquency.lapse'
    GROUP BY tenant, policy_locator
) AS lapses USING (tenant, ended_policy);

CREATE VIEW IF NOT EXISTS tributary.policies AS
WITH 'tributary-view-b93df6cd2bbceb0b' AS _tributary_definition
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
        FROM tributary.event_policies FINAL
        GROUP BY tenant, policy_locator
    ) AS facts
    ANY LEFT JOIN
    (
        SELECT
            tenant,
            policy_locator,
            groupArray((recorded_at_unix_ms, event_locator, kind, recorded_at)) AS endings
        FROM tributary.policy_endings
        GROUP BY tenant, policy_locator
    ) AS ended USING (tenant, policy_locator)
) AS policy_facts
ANY LEFT JOIN
(
    SELECT tenant, policy_locator, statuses, last_change_at_unix_ms
    FROM tributary.policy_current_status
) AS current USING (tenant, policy_locator);

CREATE VIEW IF NOT EXISTS tributary.delinquencies AS
WITH 'tributary-view-770af26dcf2d63e5' AS _tributary_definition
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
    FROM tributary.events FINAL
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
            FROM tributary.events FINAL
            WHERE type = 'policy.gracePeriod'
        ) AS grace
        ANY LEFT JOIN
        (
            SELECT tenant, invoice_locator, groupArray((timestamp_unix_ms, locator, timestamp)) AS pays
            FROM tributary.events FINAL
            WHERE type = 'payment.pay' AND invoice_locator != ''
            GROUP BY tenant, invoice_locator
        ) AS payments USING (tenant, invoice_locator)
    ) AS paid
    ANY LEFT JOIN
    (
        SELECT tenant, policy_locator, groupArray((recorded_at_unix_ms, event_locator, recorded_at)) AS lapses
        FROM tributary.policy_endings
        WHERE kind = 'lapse'
        GROUP BY tenant, policy_locator
    ) AS lapsed USING (tenant, policy_locator)
);

CREATE VIEW IF NOT EXISTS tributary.invoices AS
WITH 'tributary-view-8d6bff34453e4c4d' AS _tributary_definition
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
    FROM tributary.events FINAL
    WHERE invoice_locator != '' AND (type LIKE 'billing.invoice.%' OR type IN ('invoice.issue', 'invoice.invalidate', 'invoice.pastDue', 'invoice.writtenOff', 'payment.pay'))
    GROUP BY tenant, invoice_locator
);
