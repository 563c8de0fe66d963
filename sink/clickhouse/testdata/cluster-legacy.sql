CREATE DATABASE IF NOT EXISTS tributary ON CLUSTER tributary_cluster;

CREATE TABLE IF NOT EXISTS tributary.events ON CLUSTER tributary_cluster
(
    locator String,
    request_id String,
    user_locator String,
    username String,
    transaction_id String,
    tenant String,
    type String,
    type_class String,
    known_type UInt8,
    timestamp DateTime('UTC'),
    timestamp_ms UInt16,
    flavor String,
    data String,
    parse_error String,
    policy_locator String,
    quote_locator String,
    transaction_locator String,
    invoice_locator String,
    payment_locator String,
    delinquency_locator String,
    account_locator String,
    writeoff_locator String,
    cancellation_locator String,
    endorsement_locator String,
    renewal_locator String,
    reinstatement_locator String,
    claim_locator String,
    sub_claim_locator String,
    policyholder_locator String,
    fnol_locator String,
    disbursement_locator String,
    document_locator String,
    reference_locator String,
    reference_type String,
    locator_keys Array(String),
    locator_values Array(String),
    policy_locators Array(String),
    policy_locators_complete UInt8,
    new_statuses Array(String),
    removed_statuses Array(String),
    cancellation_name String,
    reminder_name String,
    _source String,
    _position String,
    _version UInt64,
    _ingested_at DateTime('UTC'),
    _ingested_at_ms UInt16,
    timestamp_unix_ms Int64,
    actor String,
    invoice_type String,
    generate_time Nullable(DateTime('UTC')),
    generate_time_ms UInt16,
    generate_time_unix_ms Nullable(Int64),
    autopay_time Nullable(DateTime('UTC')),
    autopay_time_ms UInt16,
    autopay_time_unix_ms Nullable(Int64)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tributary/events', '{replica}', _version)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, type, timestamp, timestamp_ms, locator);

CREATE TABLE IF NOT EXISTS tributary.event_policies ON CLUSTER tributary_cluster
(
    tenant String,
    policy_locator String,
    event_locator String,
    type String,
    type_class String,
    timestamp DateTime('UTC'),
    timestamp_ms UInt16,
    flavor String,
    list_complete UInt8,
    _source String,
    _version UInt64,
    _ingested_at DateTime('UTC'),
    _ingested_at_ms UInt16,
    timestamp_unix_ms Int64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tributary/event_policies', '{replica}', _version)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, policy_locator, event_locator);

CREATE TABLE IF NOT EXISTS tributary.policy_status_changes ON CLUSTER tributary_cluster
(
    tenant String,
    policy_locator String,
    event_locator String,
    status String,
    change String,
    timestamp DateTime('UTC'),
    timestamp_ms UInt16,
    type String,
    list_complete UInt8,
    _source String,
    _version UInt64,
    _ingested_at DateTime('UTC'),
    _ingested_at_ms UInt16,
    timestamp_unix_ms Int64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tributary/policy_status_changes', '{replica}', _version)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, policy_locator, event_locator, status, change);

CREATE TABLE IF NOT EXISTS tributary._tributary_rejects ON CLUSTER tributary_cluster
(
    _source String,
    flavor String,
    kind String,
    reason String,
    event_locator String,
    event_type String,
    tenant String,
    event_time String,
    source_position String,
    _position String,
    raw String,
    _version UInt64,
    _ingested_at DateTime('UTC'),
    _ingested_at_ms UInt16
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/tributary/_tributary_rejects', '{replica}', _version)
ORDER BY (_source, event_locator, cityHash64(raw));

CREATE TABLE IF NOT EXISTS tributary.events_all ON CLUSTER tributary_cluster AS tributary.events
ENGINE = Distributed(tributary_cluster, tributary, events, cityHash64(tenant, locator));

CREATE TABLE IF NOT EXISTS tributary.event_policies_all ON CLUSTER tributary_cluster AS tributary.event_policies
ENGINE = Distributed(tributary_cluster, tributary, event_policies, cityHash64(tenant, event_locator));

CREATE TABLE IF NOT EXISTS tributary.policy_status_changes_all ON CLUSTER tributary_cluster AS tributary.policy_status_changes
ENGINE = Distributed(tributary_cluster, tributary, policy_status_changes, cityHash64(tenant, event_locator));

CREATE TABLE IF NOT EXISTS tributary._tributary_rejects_all ON CLUSTER tributary_cluster AS tributary._tributary_rejects
ENGINE = Distributed(tributary_cluster, tributary, _tributary_rejects, cityHash64(tenant, event_locator));

CREATE VIEW IF NOT EXISTS tributary.policy_status_history ON CLUSTER tributary_cluster AS
WITH 'tributary-view-d6ebacb3b1ef2864' AS _tributary_definition
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
FROM tributary.policy_status_changes_all FINAL
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
    FROM tributary.events_all FINAL
    WHERE type IN ('policy.issue', 'policy.reinstate', 'reinstatement.issue', 'policy.end',
                   'cancellation.issue', 'policy.cancel', 'policy.lapse')
      AND policy_locator != ''
)
ARRAY JOIN ['onRisk', 'expired', 'cancelled'] AS status;

CREATE VIEW IF NOT EXISTS tributary.policy_current_status ON CLUSTER tributary_cluster AS
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

CREATE VIEW IF NOT EXISTS tributary.policy_status_intervals ON CLUSTER tributary_cluster AS
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

CREATE VIEW IF NOT EXISTS tributary.policy_endings ON CLUSTER tributary_cluster AS
WITH 'tributary-view-c9d91d21fbf0c23e' AS _tributary_definition
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
    FROM tributary.events_all FINAL
    ARRAY JOIN policy_locators AS ended_policy
    WHERE type IN ('policy.end', 'policy.lapse', 'cancellation.issue', 'policy.cancellation.issue')
       OR (type = 'policy.status.update' AND has(new_statuses, 'expired'))
) AS endings
GLOBAL ANY LEFT JOIN
(
    SELECT
        tenant,
        policy_locator AS ended_policy,
        groupArray((timestamp_unix_ms, event_locator)) AS lapses
    FROM tributary.event_policies_all FINAL
    WHERE type = 'billing.delinquency.lapse'
    GROUP BY tenant, policy_locator
) AS lapses USING (tenant, ended_policy);

CREATE VIEW IF NOT EXISTS tributary.policies ON CLUSTER tributary_cluster AS
WITH 'tributary-view-55104d168af60ba5' AS _tributary_definition
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
        FROM tributary.event_policies_all FINAL
        GROUP BY tenant, policy_locator
    ) AS facts
    GLOBAL ANY LEFT JOIN
    (
        SELECT
            tenant,
            policy_locator,
            groupArray((recorded_at_unix_ms, event_locator, kind, recorded_at)) AS endings
        FROM tributary.policy_endings
        GROUP BY tenant, policy_locator
    ) AS ended USING (tenant, policy_locator)
) AS policy_facts
GLOBAL ANY LEFT JOIN
(
    SELECT tenant, policy_locator, statuses, last_change_at_unix_ms
    FROM tributary.policy_current_status
) AS current USING (tenant, policy_locator);

CREATE VIEW IF NOT EXISTS tributary.delinquencies ON CLUSTER tributary_cluster AS
WITH 'tributary-view-de32c839187ad319' AS _tributary_definition
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
    FROM tributary.events_all FINAL
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
            FROM tributary.events_all FINAL
            WHERE type = 'policy.gracePeriod'
        ) AS grace
        GLOBAL ANY LEFT JOIN
        (
            SELECT tenant, invoice_locator, groupArray((timestamp_unix_ms, locator, timestamp)) AS pays
            FROM tributary.events_all FINAL
            WHERE type = 'payment.pay' AND invoice_locator != ''
            GROUP BY tenant, invoice_locator
        ) AS payments USING (tenant, invoice_locator)
    ) AS paid
    GLOBAL ANY LEFT JOIN
    (
        SELECT tenant, policy_locator, groupArray((recorded_at_unix_ms, event_locator, recorded_at)) AS lapses
        FROM tributary.policy_endings
        WHERE kind = 'lapse'
        GROUP BY tenant, policy_locator
    ) AS lapsed USING (tenant, policy_locator)
);

CREATE VIEW IF NOT EXISTS tributary.invoices ON CLUSTER tributary_cluster AS
WITH 'tributary-view-0a12cb662c979ee5' AS _tributary_definition
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
    FROM tributary.events_all FINAL
    WHERE invoice_locator != '' AND (type LIKE 'billing.invoice.%' OR type IN ('invoice.issue', 'invoice.invalidate', 'invoice.pastDue', 'invoice.writtenOff', 'payment.pay'))
    GROUP BY tenant, invoice_locator
);
