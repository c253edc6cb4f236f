-- who_opened_patient: who touched a patient's record since a date, how,
-- and under which purpose of use (ETREAT = break-the-glass).
--
-- Parameters: patient (the raw identifier, e.g. MRN-200117: pseudonym()
-- turns it into the stored pseudonym; auditor or admin role), since (a
-- date or RFC 3339 time).
--   custos query -f queries/audit/who_opened_patient.sql \
--       --param patient=MRN-200117 --param since=2026-01-01
SELECT time, actor_id, actor_role, actor_dept, action, purpose, outcome,
       id AS event_id
FROM access
WHERE patient = pseudonym(:'patient')
  AND time >= CAST(:'since' AS TIMESTAMP)
ORDER BY time, event_id
