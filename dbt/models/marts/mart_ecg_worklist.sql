-- 远程心电阅片工作列表: one row per ECG request, the most urgent unreported ones first
with requests as (
    select * from {{ ref('stg_silver__ecg_requests') }}
),

recordings as (
    select * from {{ ref('stg_silver__ecg_recordings') }}
),

flags as (
    select * from {{ ref('stg_silver__ecg_flags') }}
),

reports as (
    select * from {{ ref('stg_silver__ecg_reports') }}
),

org_units as (
    select * from {{ ref('stg_silver__org_units') }}
),

joined as (
    select
        q.request_id,
        q.org_code,
        o.org_name,
        q.township_org_code,
        q.county_org_code,
        o.county_name,
        q.reading_org_code,
        ro.org_name as reading_org_name,
        q.requested_at,
        coalesce(rec.recorded_at, q.recorded_at) as recorded_at,
        rec.received_at,
        p.reported_at,
        rec.recording_id,
        rec.quality,
        rec.heart_rate_bpm,
        rec.qtc_fridericia_ms,
        f.flags,
        f.flag_reasons,
        coalesce(f.top_priority, case when rec.recording_id is null then null else 5 end) as priority,
        case
            when p.report_id is not null then '已报告'
            when rec.recording_id is null then '未收到心电数据'
            when rec.quality in ('poor', 'unusable') then '需重新采集'
            else '待阅片'
        end as status,
        timestampdiff(MINUTE, q.requested_at, coalesce(rec.recorded_at, q.recorded_at)) as minutes_request_to_recording,
        timestampdiff(MINUTE, coalesce(rec.recorded_at, q.recorded_at), p.reported_at) as minutes_recording_to_report,
        timestampdiff(MINUTE, q.requested_at, p.reported_at) as minutes_request_to_report,
        p.rhythm as reported_rhythm
    from requests as q
    left join recordings as rec
        on q.request_id = rec.request_id
    left join flags as f
        on rec.recording_id = f.recording_id
    left join reports as p
        on q.request_id = p.request_id
    left join org_units as o
        on q.org_code = o.org_code
    left join org_units as ro
        on q.reading_org_code = ro.org_code
)

select
    *,
    -- reading order within a centre: unreported first, then by urgency, then oldest request first
    row_number() over (
        partition by reading_org_code
        order by case when status = '待阅片' then 0 when status = '需重新采集' then 1 else 2 end,
                 coalesce(priority, 9), requested_at, request_id
    ) as worklist_rank
from joined
