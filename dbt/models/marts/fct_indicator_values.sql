-- every indicator value: one row per indicator, period, org level and org unit, with the unit's
-- place in the org tree
with indicator_values as (
    select * from {{ ref('stg_silver__indicator_values') }}
),

org_units as (
    select * from {{ ref('dim_org_units') }}
),

definitions as (
    select * from {{ ref('stg_silver__indicator_definitions') }}
),

final as (
    select
        v.indicator_id,
        v.indicator_name_zh as indicator_name,
        v.domain,
        v.unit,
        v.direction,
        v.period_type,
        v.period,
        v.period_start,
        v.period_end,
        v.period_year,
        v.org_level,
        v.org_code,
        -- a county or the city is shown by its area name, an institution by its own name
        o.display_name as org_name,
        o.org_type,
        o.township_org_code,
        o.county_org_code,
        o.county_code,
        o.county_name,
        v.numerator,
        v.denominator,
        v.value,
        v.target,
        v.score,
        v.weight,
        v.scoring,
        -- records, estimate or census: a rate over an estimate or the census may pass 1
        d.denominator_basis,
        v.catalog_version,
        -- Delta versions of the silver inputs the engine read: recompute from these to reproduce
        v.input_versions
    from indicator_values as v
    left join org_units as o
        on v.org_code = o.org_code
    left join definitions as d
        on v.indicator_id = d.indicator_id
)

select * from final
