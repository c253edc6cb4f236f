-- new_export_destination: exports to a destination that is not on the
-- export allow-list.
--
-- Models exfiltration: records leaving for somewhere the hospital has not
-- approved (a personal mailbox, a paste site, an unknown bucket).
-- `ref_export_allow` holds exact destinations, or prefixes ending in `*`.
-- Without an allow-list, only destinations no other actor exported to in
-- the window fire (a destination new to everyone), so an unconfigured site
-- is not flooded. Severity: critical from 1000 records in the window, high
-- from 100 records or when nobody else exported there, medium otherwise.
-- Score: records exported. One finding per actor and destination.
WITH exports AS (
    SELECT id, time, actor, patient, coalesce(records, 1) AS records, destination
    FROM recent
    WHERE kind = 'access' AND action = 'export' AND outcome = 'success'
      AND destination IS NOT NULL
),
allow_list AS (
    SELECT count(*) AS entries FROM ref_export_allow
),
unlisted AS (
    SELECT e.id, e.time, e.actor, e.patient, e.records, e.destination
    FROM exports e
    LEFT JOIN ref_export_allow a
      ON a.destination = e.destination
      OR (a.destination LIKE '%*'
          AND starts_with(e.destination, rtrim(a.destination, '*')))
    WHERE a.destination IS NULL
),
users AS (
    SELECT destination, count(DISTINCT actor) AS actors
    FROM exports
    GROUP BY destination
)
SELECT u.actor,
       CASE WHEN sum(u.records) >= 1000 THEN 'critical'
            WHEN sum(u.records) >= 100 OR max(s.actors) = 1 THEN 'high'
            ELSE 'medium' END AS severity,
       'exported ' || CAST(sum(u.records) AS VARCHAR) || ' records in '
           || CAST(count(*) AS VARCHAR) || ' exports to ' || u.destination
           || ', which is not on the export allow-list ('
           || CASE WHEN max(s.actors) = 1 THEN 'no other actor exported there'
                   ELSE CAST(max(s.actors) AS VARCHAR) || ' actors exported there' END
           || ' in the window)' AS title,
       array_agg(u.id ORDER BY u.time) AS evidence,
       CASE WHEN count(DISTINCT u.patient) = 1 THEN max(u.patient) END AS patient,
       CAST(sum(u.records) AS DOUBLE) AS score,
       CAST(sum(u.records) AS DOUBLE) AS observed,
       min(u.time) AS window_start,
       max(u.time) AS window_end,
       u.actor || ' ' || u.destination AS dedup_key
FROM unlisted u
JOIN users s ON s.destination = u.destination
CROSS JOIN allow_list l
GROUP BY u.actor, u.destination
HAVING max(l.entries) > 0 OR max(s.actors) = 1
