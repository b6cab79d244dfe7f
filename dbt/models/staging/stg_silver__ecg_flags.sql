-- per recording: the most urgent priority and the flags' reasons, most urgent first
select
    recording_id,
    min(priority) as top_priority,
    count(*) as flag_count,
    array_join(transform(array_sort(collect_list(struct(priority, flag))), x -> x.flag), ',') as flags,
    array_join(transform(array_sort(collect_list(struct(priority, reason))), x -> x.reason), '；') as flag_reasons
from {{ source('silver', 'ecg_flags') }}
group by recording_id
