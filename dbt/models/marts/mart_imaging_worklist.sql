-- 远程影像阅片工作列表: one row per remote-imaging request with its study as catalogued, report,
-- turnaround and whether the report time limit (SLA) is breached
with requests as (
    select * from {{ ref('stg_silver__imaging_requests') }}
),

studies as (
    select * from {{ ref('stg_silver__imaging_studies') }}
),

reports as (
    select * from {{ ref('stg_silver__imaging_reports') }}
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
        q.modality,
        q.body_part,
        q.requested_at,
        q.images_received_at,
        s.study_instance_uid,
        s.study_datetime,
        s.n_series,
        s.n_instances,
        s.n_repaired,
        s.burned_in_annotation,
        p.reported_at,
        case when q.modality in ('CT', 'MR') then {{ var('imaging_report_sla_hours_ct_mr') }}
             else {{ var('imaging_report_sla_hours') }} end as sla_hours,
        case
            when p.report_id is not null then '已报告'
            when s.study_instance_uid is null then '未收到影像'
            else '待阅片'
        end as status,
        timestampdiff(MINUTE, q.requested_at, q.images_received_at) as minutes_request_to_images,
        timestampdiff(MINUTE, q.images_received_at, p.reported_at) as minutes_images_to_report,
        timestampdiff(MINUTE, q.requested_at, p.reported_at) as minutes_request_to_report
    from requests as q
    left join studies as s
        on q.request_id = s.request_id
    left join reports as p
        on q.request_id = p.request_id
    left join org_units as o
        on q.org_code = o.org_code
    left join org_units as ro
        on q.reading_org_code = ro.org_code
),

with_sla as (
    select
        *,
        -- breached: reported later than the limit, or still unreported past it (as of the latest data)
        coalesce(minutes_images_to_report > sla_hours * 60,
                 images_received_at + make_interval(0, 0, 0, 0, sla_hours) < (select max(requested_at) from requests),
                 false) as sla_breached
    from joined
)

select
    *,
    -- reading order within a centre: unreported first, breached first, then the oldest request
    row_number() over (
        partition by reading_org_code
        order by case when status = '待阅片' then 0 when status = '未收到影像' then 1 else 2 end,
                 case when sla_breached then 0 else 1 end, requested_at, request_id
    ) as worklist_rank
from with_sla
