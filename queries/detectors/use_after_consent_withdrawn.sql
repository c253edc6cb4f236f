-- use_after_consent_withdrawn: a patient's data used for a purpose the
-- patient has withdrawn consent for.
--
-- Models consent enforcement (research, payment, public-health use): for
-- each access or inference with a purpose, the patient's newest decision
-- in `ref_consent` for that purpose at the time of the event is looked up
-- ("as of" the event, so a later withdrawal does not make earlier use
-- wrong). Fires when it is a withdrawal; no decision on record does not
-- fire (consent rules differ by purpose). High; critical when a model
-- inference is among the uses. Score: uses. One finding per actor,
-- patient and purpose while its evidence is in the window.
WITH uses AS (
    SELECT id, time, kind, actor, patient, purpose
    FROM recent
    WHERE patient IS NOT NULL AND purpose IS NOT NULL
      AND (outcome IS NULL OR outcome = 'success')
),
decided AS (
    SELECT u.id, u.time, u.patient, u.purpose, max(c.time) AS at
    FROM uses u
    JOIN ref_consent c
      ON c.patient = u.patient AND c.purpose = u.purpose AND c.time <= u.time
    GROUP BY u.id, u.time, u.patient, u.purpose
),
withdrawn AS (
    SELECT DISTINCT u.id, u.time, u.kind, u.actor, u.patient, u.purpose
    FROM uses u
    JOIN decided d
      ON d.id = u.id AND d.time = u.time AND d.patient = u.patient AND d.purpose = u.purpose
    JOIN ref_consent c
      ON c.patient = d.patient AND c.purpose = d.purpose AND c.time = d.at
    WHERE c.status = 'withdrawn'
)
SELECT actor,
       patient,
       CASE WHEN max(CASE WHEN kind = 'inference' THEN 1 ELSE 0 END) = 1
            THEN 'critical' ELSE 'high' END AS severity,
       CAST(count(*) AS VARCHAR) || ' uses for purpose ' || purpose
           || ' of a patient who had withdrawn consent for it' AS title,
       array_agg(id ORDER BY time) AS evidence,
       CAST(count(*) AS DOUBLE) AS score,
       CAST(count(*) AS DOUBLE) AS observed,
       min(time) AS window_start,
       max(time) AS window_end,
       actor || ' ' || patient || ' ' || purpose AS dedup_key
FROM withdrawn
GROUP BY actor, patient, purpose
