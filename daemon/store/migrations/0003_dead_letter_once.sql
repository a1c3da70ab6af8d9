-- 0003: a stream entry is dead-lettered once. If the daemon dies after committing a dead letter but before
-- acking its entry, Redis delivers the entry again; it must not become a second dead letter. (A replay
-- publishes a new entry with a new id, so replays are unaffected.) Copies left by earlier versions are the
-- same entry rejected twice: keep the first.
DELETE FROM dead_letters
WHERE id NOT IN (SELECT min(id) FROM dead_letters GROUP BY stream, entry_id);
CREATE UNIQUE INDEX dead_letters_entry ON dead_letters (stream, entry_id);
