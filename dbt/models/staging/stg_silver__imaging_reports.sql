-- one report per request: the first one written (a later one is an amendment)
with ranked as (
    select
        *,
        row_number() over (partition by request_id order by reported_at, report_id) as report_rank
    from {{ source('silver', 'imaging_reports') }}
)

select
    report_id,
    request_id,
    org_code as reading_org_code,
    reader_id,
    reported_at
from ranked
where report_rank = 1
