-- break_the_glass: emergency (ETREAT) accesses since a date, by actor,
-- with how many patients each touched that way.
--
-- Parameter: since (a date or RFC 3339 time).
--   custos query -f queries/audit/break_the_glass.sql --param since=2026-01-01
SELECT actor_id, actor_role, actor_dept, count(*) AS accesses,
       count(DISTINCT patient) AS patients, min(time) AS first_access,
       max(time) AS last_access
FROM access
WHERE purpose = 'ETREAT' AND time >= CAST(:'since' AS TIMESTAMP)
GROUP BY actor_id, actor_role, actor_dept
ORDER BY accesses DESC, actor_id
