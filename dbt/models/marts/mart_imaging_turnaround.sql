-- 远程影像诊断时效: per reading centre, requesting institution and month of request
with worklist as (
    select * from {{ ref('mart_imaging_worklist') }}
)

select
    reading_org_code,
    max(reading_org_name) as reading_org_name,
    org_code,
    max(org_name) as org_name,
    date_format(requested_at, 'yyyy-MM') as request_month,
    count(*) as requests,
    count(study_instance_uid) as studies_received,
    sum(case when status = '已报告' then 1 else 0 end) as reported,
    sum(case when sla_breached then 1 else 0 end) as sla_breaches,
    percentile_approx(minutes_request_to_images, 0.5) as median_minutes_request_to_images,
    percentile_approx(minutes_images_to_report, 0.5) as median_minutes_images_to_report,
    percentile_approx(minutes_images_to_report, 0.9) as p90_minutes_images_to_report
from worklist
group by reading_org_code, org_code, date_format(requested_at, 'yyyy-MM')
