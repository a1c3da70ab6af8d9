-- 0001: records, their tag versions, duplicates, redeliveries, dead letters, full-text index.
-- Timestamps: *_at columns hold UTC ISO-8601 text (exact, readable); *_us columns hold the same instant as
-- integer microseconds since the epoch, for range queries and ordering.

CREATE TABLE records (
    id              INTEGER PRIMARY KEY,          -- rowid; also the FTS5 content_rowid
    message_id      TEXT    NOT NULL UNIQUE,      -- the idempotency key
    agent           TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    reply_to        TEXT,
    content         TEXT    NOT NULL,
    attachments     TEXT,                         -- JSON array, NULL when there are none
    created_at      TEXT    NOT NULL,
    created_us      INTEGER NOT NULL,
    sender_tags     TEXT,                         -- JSON object as sent, or NULL
    metadata        TEXT    NOT NULL,             -- JSON object
    schema_version  INTEGER NOT NULL,
    stream          TEXT    NOT NULL,
    entry_id        TEXT    NOT NULL,
    received_at     TEXT    NOT NULL,
    committed_at    TEXT    NOT NULL,
    committed_us    INTEGER NOT NULL,
    delivery_count  INTEGER NOT NULL,
    content_sha256  TEXT    NOT NULL
);
-- iter_records / export / time-range queries: ordered by created_at, then message_id.
CREATE INDEX records_created ON records (created_us, message_id);
-- conversation_history (tagger priming) and per-conversation queries.
CREATE INDEX records_conversation ON records (conversation_id, created_us);
-- decisions: the replies to a message.
CREATE INDEX records_reply_to ON records (reply_to) WHERE reply_to IS NOT NULL;

-- Several tag versions per message (retags, model tags), one per tagger_version. The current tags are the
-- latest added: the row with is_current = 1, kept unique per message by the store in the same transaction
-- that adds a version. WITHOUT ROWID: the primary key is the only b-tree, one less to update per insert.
CREATE TABLE tags (
    message_id                 TEXT    NOT NULL,
    tagger_version             TEXT    NOT NULL,
    is_current                 INTEGER NOT NULL,
    added_us                   INTEGER NOT NULL,  -- orders a record's versions (tag_history)
    tier                       TEXT    NOT NULL CHECK (tier IN ('A', 'C', 'E')),
    tier_rule                  TEXT    NOT NULL,
    tier_confidence            REAL    NOT NULL,
    novelty                    INTEGER NOT NULL,
    emergence                  INTEGER NOT NULL,
    novelty_signal             INTEGER NOT NULL,
    solution_quality           INTEGER NOT NULL,
    assumption_challenge       INTEGER NOT NULL,
    error_correction           INTEGER NOT NULL,
    cross_domain_synthesis     INTEGER NOT NULL,
    specialization_recognition INTEGER NOT NULL,
    evidence                   TEXT    NOT NULL,  -- JSON object
    PRIMARY KEY (message_id, tagger_version)
) WITHOUT ROWID;
-- At most one current version per message; also the join path from records to their current tags.
CREATE UNIQUE INDEX tags_current ON tags (message_id) WHERE is_current = 1;

-- The same message_id arriving from another stream entry: counted here, never stored as a second record.
CREATE TABLE duplicates (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT    NOT NULL,
    stream          TEXT    NOT NULL,
    entry_id        TEXT    NOT NULL,
    seen_at         TEXT    NOT NULL,
    content_matches INTEGER NOT NULL           -- 1 when the content hash equals the recorded one
);
CREATE INDEX duplicates_message ON duplicates (message_id);

-- The very same stream entry delivered again by Redis after it had been committed (e.g. the ack was lost).
CREATE TABLE redeliveries (
    id             INTEGER PRIMARY KEY,
    message_id     TEXT    NOT NULL,
    stream         TEXT    NOT NULL,
    entry_id       TEXT    NOT NULL,
    seen_at        TEXT    NOT NULL,
    delivery_count INTEGER NOT NULL
);

CREATE TABLE dead_letters (
    id             INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    entry_id       TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    detail         TEXT    NOT NULL,
    fields         BLOB    NOT NULL,             -- original fields, length-prefixed (see daemon/store/sqlite.py)
    message_id     TEXT,
    delivery_count INTEGER NOT NULL,
    received_at    TEXT    NOT NULL,
    consumer       TEXT,
    replayed_at    TEXT
);

-- Full-text index over records.content. External content: the text lives once, in records. commit_batch
-- fills it explicitly in the same transaction (measured ~4x faster than a per-row trigger); records are
-- append-only, so no update/delete maintenance is needed.
CREATE VIRTUAL TABLE records_fts USING fts5 (
    content,
    content = 'records',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- Small key/value facts about the store: last_commit_at, and the row check_writable rewrites.
CREATE TABLE store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
