-- 0002: let FTS5 merge index segments 16 at a time instead of 4 (a setting stored in the index itself).
-- Each merge rewrites the merged postings, so merging less often means each indexed word is rewritten
-- fewer times. Measured on 100,000 records in 500-record batches: commit_batch CPU 20.4 -> 16.0 ms per
-- batch, while a one-term query stayed under 0.1 ms.
INSERT INTO records_fts (records_fts, rank) VALUES ('automerge', 16);
