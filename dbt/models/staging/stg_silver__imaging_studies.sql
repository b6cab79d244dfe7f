-- the studies catalogued by spark_jobs/imaging, one per request (the latest study of a resent exam)
with ranked as (
    select
        s.*,
        row_number() over (partition by s.request_id order by s.study_datetime desc, s.study_instance_uid) as study_rank
    from {{ source('silver', 'imaging_studies') }} as s
    where s.request_id is not null
)

select
    study_instance_uid,
    request_id,
    study_datetime,
    modalities,
    body_parts,
    n_series,
    n_instances,
    n_frames,
    total_bytes,
    n_repaired,
    burned_in_annotation,
    first_received_at
from ranked
where study_rank = 1
