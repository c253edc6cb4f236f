-- patient_data_to_models: which datasets were derived from a patient's
-- records, which models were trained on those datasets, and who has
-- queried those models since they were trained.
--
-- Parameter: patient (the raw identifier; auditor or admin role).
--   custos query -f queries/audit/patient_data_to_models.sql \
--       --param patient=MRN-200117
WITH datasets AS (
    SELECT DISTINCT "to" AS dataset
    FROM lineage_edges
    WHERE "from" = 'patient:' || pseudonym(:'patient') AND op = 'derive'
),
models AS (
    SELECT d.dataset, e."to" AS model, min(e.time) AS trained_at
    FROM lineage_edges e
    JOIN datasets d ON e."from" = d.dataset
    WHERE e.op = 'train'
    GROUP BY d.dataset, e."to"
)
SELECT m.dataset, m.model, m.trained_at, i.actor_id AS caller,
       count(i.id) AS inferences, min(i.time) AS first_call,
       max(i.time) AS last_call
FROM models m
LEFT JOIN inference i
       ON 'model:' || i.model = m.model AND i.time >= m.trained_at
GROUP BY m.dataset, m.model, m.trained_at, i.actor_id
ORDER BY m.dataset, m.model, caller
