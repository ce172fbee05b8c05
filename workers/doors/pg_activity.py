"""What PostgreSQL sessions are doing: every read of ``pg_stat_activity`` (and of
``pg_locks`` joined to it) that maintd makes lives here, so the rules for "whose session
is this" are written once.

maintd's own sessions carry ``application_name`` ``maintd:<task>`` (``OWN_SESSION_PREFIX``):
admission leaves them out of the load it measures.
"""

from __future__ import annotations

OWN_SESSION_PREFIX = "maintd:"

# health.postgres: server facts and connection counts in one round trip.
SERVER_SQL = """
SELECT split_part(current_setting('server_version'), ' ', 1) AS version,
       current_setting('max_connections')::int AS max_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS connections,
       pg_is_in_recovery() AS in_recovery,
       (SELECT coalesce(blks_hit, 0) FROM pg_stat_database WHERE datname = current_database()) AS blks_hit,
       (SELECT coalesce(blks_read, 0) FROM pg_stat_database WHERE datname = current_database()) AS blks_read,
       (SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND state LIKE 'idle in transaction%')::int AS idle_in_transaction
"""

# health.postgres: transactions of this database's client sessions, oldest first; maintd's own
# sessions excluded (the nightly backup's snapshot transaction is expected to be long).
LONGEST_TX_SQL = """
SELECT pid, state, application_name,
       EXTRACT(EPOCH FROM clock_timestamp() - xact_start)::float8 AS age_s
  FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type = 'client backend'
   AND xact_start IS NOT NULL AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'
   AND coalesce(application_name, '') NOT LIKE 'maintd:%'
 ORDER BY xact_start
 LIMIT 1
"""

# Admission: live-load signals of this database, maintd's own sessions left out.
SIGNALS_SQL = """
SELECT
  count(*) FILTER (WHERE state = 'active' AND backend_type = 'client backend') AS active_sessions,
  count(*) FILTER (WHERE wait_event_type = 'Lock') AS lock_waits,
  EXTRACT(epoch FROM now() - min(xact_start) FILTER (WHERE backend_type = 'client backend'))::float8
    AS oldest_transaction_s
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND coalesce(application_name, '') NOT LIKE 'maintd:%'
"""

# postgres.long_queries: sessions running a query or holding a transaction open for at least %(min_age)s.
SESSIONS_SQL = """
SELECT a.pid, a.usename AS user_name, a.application_name, a.state, a.backend_start, a.xact_start,
       a.query_start, coalesce(r.rolsuper, false) AS superuser, a.backend_type,
       coalesce(a.application_name, '') LIKE 'maintd:%%' AS own,
       EXTRACT(epoch FROM now() - CASE WHEN a.state = 'active' THEN a.query_start ELSE a.xact_start END)::float8
         AS age_s,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 400) AS query
FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.pid <> pg_backend_pid() AND a.backend_type = 'client backend' AND a.datname = current_database()
  AND a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
  AND EXTRACT(epoch FROM now() - CASE WHEN a.state = 'active' THEN a.query_start ELSE a.xact_start END)
      >= %(min_age)s
ORDER BY age_s DESC
"""

# postgres.long_queries: terminate one session, only if it is still the one that was seen.
TERMINATE_SQL = """
SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
WHERE pid = %(pid)s AND backend_start = %(backend_start)s AND xact_start IS NOT DISTINCT FROM %(xact_start)s
"""

# postgres.stats: sessions per state.
CONNECTIONS_SQL = """
SELECT coalesce(state, backend_type) AS state, count(*) AS n FROM pg_stat_activity GROUP BY 1 ORDER BY 1
"""

# postgres.stats: database-wide numbers.
DATABASE_SQL = """
SELECT pg_database_size(current_database()) AS database_bytes,
       (SELECT blks_hit::float8 / nullif(blks_hit + blks_read, 0) FROM pg_stat_database
         WHERE datname = current_database()) AS cache_hit_ratio,
       (SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()) AS xid_age,
       (SELECT max(age(datfrozenxid)) FROM pg_database) AS cluster_xid_age,
       current_setting('max_connections')::int AS max_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS client_connections
"""

# Locks: who holds a maintd advisory lock (classid, objid) in this database (advisory locks are
# per database: the same keys in another database of the server are another lock).
ADVISORY_HOLDER_SQL = """
SELECT a.application_name, a.pid, a.query_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# Locks: does this session still hold its maintd advisory lock (classid, objid)?
ADVISORY_HELD_SQL = """
SELECT count(*) AS held FROM pg_locks
WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 2
"""

# incident.capture: the server, in one round trip.
INCIDENT_SERVER_SQL = """
SELECT current_setting('server_version') AS version, pg_is_in_recovery() AS in_recovery,
       current_setting('max_connections')::int AS max_connections,
       EXTRACT(epoch FROM now() - pg_postmaster_start_time())::float8 AS uptime_s,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS client_connections
"""

# incident.capture: every session doing something (not idle), every session that blocks
# another (an idle one can hold an advisory lock) and autovacuum/replication workers, with
# waits and the pids blocking each; ours left out. Oldest transaction first.
INCIDENT_SESSIONS_SQL = """
WITH blockers AS (SELECT DISTINCT unnest(pg_blocking_pids(pid)) AS pid FROM pg_stat_activity)
SELECT a.pid, a.datname, a.usename AS user_name, a.application_name, host(a.client_addr) AS client_addr,
       a.backend_type, a.state, a.wait_event_type, a.wait_event,
       EXTRACT(epoch FROM now() - a.xact_start)::float8 AS xact_age_s,
       EXTRACT(epoch FROM now() - a.query_start)::float8 AS query_age_s,
       EXTRACT(epoch FROM now() - a.backend_start)::float8 AS backend_age_s,
       pg_blocking_pids(a.pid) AS blocked_by, left(a.query, 4000) AS query
FROM pg_stat_activity a
WHERE a.pid <> pg_backend_pid()
  AND ((a.backend_type = 'client backend' AND a.state IS DISTINCT FROM 'idle')
       OR a.backend_type IN ('autovacuum worker', 'walsender', 'walreceiver', 'parallel worker')
       OR a.pid IN (SELECT pid FROM blockers))
ORDER BY a.xact_start NULLS LAST, a.query_start NULLS LAST
LIMIT %(limit)s
"""

# incident.capture: lock requests waiting, what they wait for and who blocks them.
INCIDENT_LOCK_WAITS_SQL = """
SELECT l.pid, l.locktype, l.mode, a.datname,
       coalesce(l.relation::regclass::text, l.transactionid::text, l.virtualxid,
                l.classid::text || ':' || l.objid::text) AS object,
       EXTRACT(epoch FROM now() - l.waitstart)::float8 AS waiting_s, pg_blocking_pids(l.pid) AS blocked_by
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted
ORDER BY l.waitstart NULLS LAST
LIMIT %(limit)s
"""

# incident.capture: locks held and wanted, by mode.
INCIDENT_LOCK_COUNTS_SQL = """
SELECT mode, granted, count(*)::int AS n FROM pg_locks GROUP BY 1, 2 ORDER BY 3 DESC
"""

# incident.capture: the longest open transactions of the whole server.
INCIDENT_LONGEST_TX_SQL = """
SELECT pid, datname, usename AS user_name, application_name, state, wait_event_type, wait_event,
       EXTRACT(epoch FROM now() - xact_start)::float8 AS xact_age_s, backend_xmin::text AS xmin,
       left(query, 4000) AS query
FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
ORDER BY xact_start
LIMIT %(limit)s
"""

# incident.capture on a primary: each standby and how far behind it is.
INCIDENT_STANDBYS_SQL = """
SELECT application_name, host(client_addr) AS client_addr, state, sync_state,
       EXTRACT(epoch FROM write_lag)::float8 AS write_lag_s, EXTRACT(epoch FROM flush_lag)::float8 AS flush_lag_s,
       EXTRACT(epoch FROM replay_lag)::float8 AS replay_lag_s,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS replay_lag_bytes
FROM pg_stat_replication
"""

# incident.capture on a replica: how far replay is behind.
INCIDENT_REPLICA_SQL = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8 AS replay_lag_s,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8 AS replay_backlog_bytes,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver_status
"""

# incident.capture: replication slots and the WAL each keeps (an inactive slot fills the disk).
INCIDENT_SLOTS_SQL = """
SELECT slot_name, slot_type, database, active,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END,
                       restart_lsn)::float8 AS retained_bytes
FROM pg_replication_slots ORDER BY 5 DESC NULLS LAST
"""
