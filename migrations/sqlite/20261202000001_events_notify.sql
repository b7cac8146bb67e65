-- PostgreSQL's events_notify has no SQLite counterpart: SQLite consoles poll. Kept so that both
-- engines count the same migrations.
SELECT 1;
