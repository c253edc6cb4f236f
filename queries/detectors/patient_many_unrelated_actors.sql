-- patient_many_unrelated_actors: one patient's record opened by many
-- actors from several departments, none on the care team, within an hour.
--
-- Models curiosity around a newsworthy patient (a celebrity, a colleague,
-- a victim in the news): the care team opens a record all day, but many
-- people from unrelated departments opening it at once is the classic
-- snooping incident. Care-team members (by actor or by department, in
-- force at the access) are not counted. Fires at 6 or more actors from 3
-- or more departments (medium); for a patient flagged in `ref_vip`, at 3
-- actors from 2 departments (high). The finding's actor is the most recent
-- of them; evidence lists every counted access. Score: actors / threshold.
-- One finding per patient while its evidence is in the window.
WITH latest AS (
    SELECT max(time) AS t FROM recent
),
acc AS (
    SELECT r.id, r.time, r.actor, r.dept, r.patient
    FROM recent r CROSS JOIN latest l
    WHERE r.kind = 'access' AND r.outcome = 'success' AND r.patient IS NOT NULL
      AND r.action IN ('read', 'update', 'print', 'export')
      AND r.time > l.t - INTERVAL '1 hour'
),
unrelated AS (
    SELECT a.id, a.time, a.actor, a.dept, a.patient
    FROM acc a
    LEFT JOIN ref_care_team c
      ON c.patient = a.patient
     AND (c.actor = a.actor OR (c.actor IS NULL AND c.dept = a.dept))
     AND (c.start IS NULL OR c.start <= a.time)
     AND (c."end" IS NULL OR a.time < c."end")
    WHERE c.patient IS NULL
),
-- Patients opened by at least 3 unrelated actors (the lower of the two
-- thresholds), found with plain groupings: most patients of a busy hour
-- have one or two, and the distinct counts and evidence lists below,
-- which keep state per group, are then built for the few candidates only.
candidates AS (
    SELECT patient
    FROM (SELECT patient, actor FROM unrelated GROUP BY patient, actor) pairs
    GROUP BY patient
    HAVING count(*) >= 3
),
per_patient AS (
    SELECT u.patient,
           count(DISTINCT u.actor) AS actors,
           count(DISTINCT u.dept) AS depts,
           first_value(u.actor ORDER BY u.time DESC) AS last_actor,
           array_agg(u.id ORDER BY u.time) AS evidence,
           min(u.time) AS window_start,
           max(u.time) AS window_end
    FROM unrelated u
    JOIN candidates k ON k.patient = u.patient
    GROUP BY u.patient
),
flagged AS (
    SELECT patient, max(category) AS category FROM ref_vip GROUP BY patient
)
SELECT p.last_actor AS actor,
       p.patient,
       CASE WHEN v.category IS NOT NULL THEN 'high' ELSE 'medium' END AS severity,
       'patient opened by ' || CAST(p.actors AS VARCHAR) || ' actors from '
           || CAST(p.depts AS VARCHAR)
           || ' departments outside the care team within an hour'
           || CASE WHEN v.category IS NOT NULL
                   THEN ' (flagged ' || v.category || '; fires at 3 actors, 2 departments)'
                   ELSE ' (fires at 6 actors, 3 departments)' END AS title,
       p.evidence,
       CAST(p.actors AS DOUBLE)
           / CASE WHEN v.category IS NOT NULL THEN 3.0 ELSE 6.0 END AS score,
       CAST(p.actors AS DOUBLE) AS observed,
       CASE WHEN v.category IS NOT NULL THEN 3.0 ELSE 6.0 END AS expected,
       p.window_start,
       p.window_end,
       p.patient AS dedup_key
FROM per_patient p
LEFT JOIN flagged v ON v.patient = p.patient
WHERE (v.category IS NULL AND p.actors >= 6 AND p.depts >= 3)
   OR (v.category IS NOT NULL AND p.actors >= 3 AND p.depts >= 2)
