-- cross_department_breadth: an actor opened many patients of other
-- departments within ten minutes.
--
-- Models browsing ("snooping"): a clinician's work stays with the patients
-- of their own department or those assigned to them. A patient counts as
-- another department's when, in the window, other actors opened them and
-- none of those actors is from the actor's department, and neither the
-- actor nor their department is on the patient's care team at the time.
-- Each patient counts once, at the actor's first successful access in the
-- window. Fires when more than 10 such patients fall within 10 minutes;
-- high from 25. Score: patients / 10. Needs `actor.dept` on events.
WITH acc AS (
    SELECT id, time, actor, dept, patient
    FROM recent
    WHERE kind = 'access' AND outcome = 'success'
      AND patient IS NOT NULL AND dept IS NOT NULL
),
first_touch AS (
    SELECT actor, dept, patient, min(time) AS time,
           first_value(id ORDER BY time) AS id
    FROM acc
    GROUP BY actor, dept, patient
),
foreign_touch AS (
    SELECT f.actor, f.dept, f.patient, f.time, f.id
    FROM first_touch f
    JOIN acc o ON o.patient = f.patient AND o.actor <> f.actor
    GROUP BY f.actor, f.dept, f.patient, f.time, f.id
    HAVING max(CASE WHEN o.dept = f.dept THEN 1 ELSE 0 END) = 0
),
outsider AS (
    SELECT t.actor, t.dept, t.patient, t.time, t.id
    FROM foreign_touch t
    LEFT JOIN ref_care_team c
      ON c.patient = t.patient
     AND (c.actor = t.actor OR (c.actor IS NULL AND c.dept = t.dept))
     AND (c.start IS NULL OR c.start <= t.time)
     AND (c."end" IS NULL OR t.time < c."end")
    WHERE c.patient IS NULL
),
running AS (
    SELECT actor, time,
           count(*) OVER (PARTITION BY actor ORDER BY time
               RANGE BETWEEN INTERVAL '10 minutes' PRECEDING AND CURRENT ROW) AS n
    FROM outsider
),
peak AS (
    SELECT actor, max(n) AS n, first_value(time ORDER BY n DESC, time) AS at
    FROM running
    GROUP BY actor
)
SELECT p.actor,
       CASE WHEN p.n >= 25 THEN 'high' ELSE 'medium' END AS severity,
       'opened ' || CAST(p.n AS VARCHAR)
           || ' patients of other departments within 10 minutes (own department '
           || max(o.dept) || '; fires above 10)' AS title,
       array_agg(o.id ORDER BY o.time) AS evidence,
       CAST(p.n AS DOUBLE) / 10.0 AS score,
       CAST(p.n AS DOUBLE) AS observed,
       10.0 AS expected,
       min(o.time) AS window_start,
       max(o.time) AS window_end
FROM peak p
JOIN outsider o
  ON o.actor = p.actor
 AND o.time >= p.at - INTERVAL '10 minutes' AND o.time <= p.at
WHERE p.n > 10
GROUP BY p.actor, p.n
