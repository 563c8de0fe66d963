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
    _ingested_at_ms UInt16 COMMENT 'Milliseconds (0-999) of _ingested_at, which holds whole seconds: _ingested_at + _ingested_at_ms ms is the exact time.'
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
    _ingested_at_ms UInt16 COMMENT 'Milliseconds (0-999) of _ingested_at, which holds whole seconds: _ingested_at + _ingested_at_ms ms is the exact time.'
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
    _ingested_at_ms UInt16 COMMENT 'Milliseconds (0-999) of _ingested_at, which holds whole seconds: _ingested_at + _ingested_at_ms ms is the exact time.'
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

CREATE VIEW IF NOT EXISTS tributary.policy_current_status AS
SELECT
    tenant,
    policy_locator,
    arraySort(groupArrayIf(status, last_change = 'added')) AS statuses,
    max(changed_at) AS last_change_at,
    min(status_lists_complete) AS lists_complete
FROM
(
    SELECT
        tenant,
        policy_locator,
        status,
        argMax(change, (timestamp, event_locator, change = 'added')) AS last_change,
        max(timestamp) AS changed_at,
        min(toUInt8(list_complete)) AS status_lists_complete
    FROM tributary.policy_status_changes FINAL
    GROUP BY tenant, policy_locator, status
)
GROUP BY tenant, policy_locator;

CREATE VIEW IF NOT EXISTS tributary.policy_endings AS
SELECT
    tenant,
    ended_policy AS policy_locator,
    multiIf(
        event_type IN ('policy.end', 'policy.status.update'), 'expiry',
        event_type = 'policy.lapse', 'lapse',
        event_type = 'cancellation.issue' AND lower(cancellation_name) LIKE '%lapse%', 'lapse',
        event_type = 'policy.cancellation.issue'
            AND arrayExists((lapsed, ended) -> lapsed <= ended AND addDays(lapsed, 1) >= ended,
                lapse_times, arrayResize([recorded_at], length(lapse_times), recorded_at)), 'lapse',
        'manual_cancellation') AS kind,
    recorded_at,
    event_locator,
    event_type,
    flavor,
    cancellation_name
FROM
(
    SELECT
        tenant,
        ended_policy,
        timestamp AS recorded_at,
        locator AS event_locator,
        type AS event_type,
        flavor,
        cancellation_name
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
        groupArray(timestamp) AS lapse_times
    FROM tributary.event_policies FINAL
    WHERE type = 'billing.delinquency.lapse'
    GROUP BY tenant, policy_locator
) AS lapses USING (tenant, ended_policy);
