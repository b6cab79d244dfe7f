-- the yearly scores an institution or a township is assessed on: one row per scored indicator,
-- year, org level and org unit (volumes are shown elsewhere but not scored)
with indicator_values as (
    select * from {{ ref('stg_silver__indicator_values') }}
),

final as (
    select
        indicator_id,
        indicator_name_zh as indicator_name,
        domain,
        unit,
        direction,
        period_year,
        org_level,
        org_code,
        numerator,
        denominator,
        value,
        target,
        scoring,
        -- the authenticity-adjusted score when the bureau turns the adjustment on
        -- (dbt var authenticity_adjustment; both are stored in silver)
        {% if var('authenticity_adjustment', false) %}adjusted_score{% else %}score{% endif %} as score,
        score as unadjusted_score,
        authenticity_coefficient,
        weight,
        -- no value (an empty denominator) means no score: the indicator leaves the total out
        score is not null as is_scored,
        catalog_version
    from indicator_values
    where period_type = 'year'
        and org_level in ('institution', 'township')
        and scoring <> 'none'
        and weight > 0
)

select * from final
