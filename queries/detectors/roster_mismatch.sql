-- roster_mismatch: access by someone the workforce roster does not vouch
-- for at that time.
--
-- Models orphaned and misused accounts: an account not on the roster
-- (high), used after its owner's termination (critical) or before their
-- hire date (high), or used under another department than the rostered
-- one (medium: a shared or borrowed login, or a roster out of date).
-- Silent when `ref_roster` is empty (no roster configured). Service
-- accounts must be on the roster. One finding per actor and reason while
-- its evidence is in the window. Score: accesses.
WITH roster_size AS (
    SELECT count(*) AS entries FROM ref_roster
),
checked AS (
    SELECT r.id, r.time, r.actor, r.dept, r.patient, s.dept AS roster_dept,
           CASE
               WHEN s.actor IS NULL THEN 'not on the roster'
               WHEN s.terminated IS NOT NULL AND r.time >= s.terminated
                   THEN 'used after termination'
               WHEN s.hired IS NOT NULL AND r.time < s.hired THEN 'used before hire'
               WHEN r.dept IS NOT NULL AND s.dept IS NOT NULL AND r.dept <> s.dept
                   THEN 'used outside the rostered department'
           END AS reason
    FROM recent r
    CROSS JOIN roster_size z
    LEFT JOIN ref_roster s ON s.actor = r.actor
    WHERE z.entries > 0 AND r.kind = 'access'
)
SELECT actor,
       CASE reason
           WHEN 'used after termination' THEN 'critical'
           WHEN 'used outside the rostered department' THEN 'medium'
           ELSE 'high' END AS severity,
       'account ' || reason || ': ' || CAST(count(*) AS VARCHAR) || ' accesses to '
           || CAST(count(DISTINCT patient) AS VARCHAR) || ' patients'
           || CASE WHEN reason = 'used outside the rostered department'
                   THEN ' (as ' || max(dept) || ', rostered in ' || max(roster_dept) || ')'
                   ELSE '' END AS title,
       array_agg(id ORDER BY time) AS evidence,
       CAST(count(*) AS DOUBLE) AS score,
       CAST(count(*) AS DOUBLE) AS observed,
       min(time) AS window_start,
       max(time) AS window_end,
       actor || ' ' || reason AS dedup_key
FROM checked
WHERE reason IS NOT NULL
GROUP BY actor, reason
