-- the latest recording of each request (a retake replaces a poor one)
with ranked as (
    select
        r.*,
        f.heart_rate_bpm,
        f.qtc_fridericia_ms,
        f.qrs_axis_deg,
        row_number() over (partition by r.request_id order by r.recorded_at desc, r.recording_id) as recording_rank
    from {{ source('silver', 'ecg_recordings') }} as r
    left join {{ source('silver', 'ecg_features') }} as f
        on r.recording_id = f.recording_id
    where r.request_id is not null
)

select
    recording_id,
    request_id,
    recorded_at,
    received_at,
    format,
    n_leads,
    quality,
    quality_reason,
    heart_rate_bpm,
    qtc_fridericia_ms,
    qrs_axis_deg,
    algorithm
from ranked
where recording_rank = 1
