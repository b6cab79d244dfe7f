-- 全市指标概览: every indicator's city-level value per period, beside the previous period's
with indicator_values as (
    select * from {{ ref('fct_indicator_values') }}
    where org_level = 'city'
),

dates as (
    select * from {{ ref('dim_dates') }}
),

with_previous as (
    select
        v.*,
        p.period as previous_period,
        p.value as previous_value
    from indicator_values as v
    -- the period just before, of the same type: it ends the day before this one starts
    left join indicator_values as p
        on v.indicator_id = p.indicator_id
        and v.org_code = p.org_code
        and v.period_type = p.period_type
        and p.period_end = date_sub(v.period_start, 1)
),

final as (
    select
        v.indicator_id,
        v.indicator_name,
        v.domain,
        v.unit,
        v.direction,
        v.period_type,
        v.period,
        case v.period_type when 'year' then d.year_label_zh
                           when 'quarter' then d.quarter_label_zh
                           else d.month_label_zh
        end as period_label_zh,
        v.period_start,
        v.period_end,
        v.org_code,
        v.org_name,
        v.numerator,
        v.denominator,
        v.value,
        v.target,
        v.score,
        v.weight,
        v.denominator_basis,
        v.previous_period,
        v.previous_value,
        v.value - v.previous_value as value_change,
        case when v.previous_value <> 0 then (v.value - v.previous_value) / abs(v.previous_value) end
            as value_change_relative,
        case when v.value is null or v.previous_value is null then null
             when v.value = v.previous_value then '持平'
             when v.direction = 'volume' then case when v.value > v.previous_value then '上升' else '下降' end
             when (v.direction = 'higher_is_better') = (v.value > v.previous_value) then '改善'
             else '变差'
        end as trend,
        v.catalog_version
    from with_previous as v
    left join dates as d
        on v.period_start = d.calendar_date
)

select * from final
