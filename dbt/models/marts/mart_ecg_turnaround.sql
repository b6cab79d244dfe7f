-- 远程心电诊断时效: per reading centre and month of request, volumes and turnaround minutes
with worklist as (
    select * from {{ ref('mart_ecg_worklist') }}
)

select
    reading_org_code,
    max(reading_org_name) as reading_org_name,
    date_format(requested_at, 'yyyy-MM') as request_month,
    count(*) as requests,
    count(recording_id) as recordings_received,
    sum(case when status = '已报告' then 1 else 0 end) as reported,
    sum(case when status = '需重新采集' then 1 else 0 end) as retakes_needed,
    sum(case when priority <= 2 then 1 else 0 end) as urgent_recordings,
    percentile_approx(minutes_request_to_recording, 0.5) as median_minutes_request_to_recording,
    percentile_approx(minutes_recording_to_report, 0.5) as median_minutes_recording_to_report,
    percentile_approx(minutes_recording_to_report, 0.9) as p90_minutes_recording_to_report,
    sum(case when minutes_recording_to_report > 24 * 60 then 1 else 0 end) as reports_over_24h
from worklist
group by reading_org_code, date_format(requested_at, 'yyyy-MM')
