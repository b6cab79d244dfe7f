-- the categories of every dimension of a disaggregated value add up to the published numerator
-- and denominator (fct_indicator_values): rows returned are values where they do not
with parts as (
    select
        indicator_id, period, org_level, org_code, dimension,
        sum(numerator) as numerator,
        sum(denominator) as denominator
    from {{ ref('fct_indicator_disaggregations') }}
    group by indicator_id, period, org_level, org_code, dimension
),

published as (
    select indicator_id, period, org_level, org_code, numerator, denominator
    from {{ ref('stg_silver__indicator_values') }}
)

select
    p.*,
    v.numerator as published_numerator,
    v.denominator as published_denominator
from parts as p
left join published as v
    on p.indicator_id = v.indicator_id and p.period = v.period
    and p.org_level = v.org_level and p.org_code = v.org_code
where v.indicator_id is null
   or abs(p.numerator - v.numerator) > 0.0001
   or abs(coalesce(p.denominator, 0) - coalesce(v.denominator, 0)) > 0.0001
