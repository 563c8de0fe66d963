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
    _ingested_at_ms UInt16
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
    _ingested_at_ms UInt16
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
    _ingested_at_ms UInt16
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

CREATE VIEW IF NOT EXISTS tributary.policy_current_status ON CLUSTER tributary_cluster AS
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
    FROM tributary.policy_status_changes_all FINAL
    GROUP BY tenant, policy_locator, status
)
GROUP BY tenant, policy_locator;

CREATE VIEW IF NOT EXISTS tributary.policy_endings ON CLUSTER tributary_cluster AS
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
        groupArray(timestamp) AS lapse_times
    FROM tributary.event_policies_all FINAL
    WHERE type = 'billing.delinquency.lapse'
    GROUP BY tenant, policy_locator
) AS lapses USING (tenant, ended_policy);
