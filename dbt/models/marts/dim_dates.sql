-- the calendar over the span of the indicator periods, with the period labels indicators use
with indicator_values as (
    select * from {{ ref('stg_silver__indicator_values') }}
),

span as (
    select min(period_start) as first_date, max(period_end) as last_date
    from indicator_values
),

days as (
    select explode(sequence(first_date, last_date, interval 1 day)) as calendar_date
    from span
    where first_date is not null
),

final as (
    select
        calendar_date,
        year(calendar_date) as year,
        quarter(calendar_date) as quarter,
        month(calendar_date) as month,
        dayofmonth(calendar_date) as day_of_month,
        -- ISO day of the week: 1 = Monday … 7 = Sunday
        weekday(calendar_date) + 1 as day_of_week,
        weekday(calendar_date) >= 5 as is_weekend,
        cast(year(calendar_date) as string) as year_label,
        concat(year(calendar_date), '-Q', quarter(calendar_date)) as quarter_label,
        date_format(calendar_date, 'yyyy-MM') as month_label,
        concat(year(calendar_date), '年') as year_label_zh,
        concat(year(calendar_date), '年第', quarter(calendar_date), '季度') as quarter_label_zh,
        concat(year(calendar_date), '年', month(calendar_date), '月') as month_label_zh,
        trunc(calendar_date, 'quarter') as quarter_start_date,
        trunc(calendar_date, 'month') as month_start_date
    from days
)

select * from final
