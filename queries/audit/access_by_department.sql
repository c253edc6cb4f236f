-- access_by_department: daily accesses per department and purpose, from
-- the aggregate view an analyst may read (no patient-level rows).
--   custos query -f queries/audit/access_by_department.sql
SELECT day, actor_dept, purpose, sum(events) AS events,
       sum(patients) AS patient_days
FROM access_daily
GROUP BY day, actor_dept, purpose
ORDER BY day, events DESC, actor_dept
