with indicator_values as (
    select * from {{ ref('stg_silver__indicator_values') }}
    where indicator_id = 'htn_standard_mgmt_rate'
        and period_type = 'year'
        and org_level in ('township', 'county', 'city')
),

org_units as (
    select * from {{ ref('stg_silver__org_units') }}
),

counties as (
    select org_code as county_org_code, county_area_code, county_name
    from org_units
    where org_type = 'county_bureau'
),

final as (
    select
        v.period_year,
        v.org_level,
        v.org_code,
        -- a county or the city is shown by its area name, an institution by its own name
        case when v.org_level = 'township' then o.org_name
             when v.org_level = 'county' then c.county_name
             else regexp_replace(o.org_name, '卫生健康局$', '')
        end as org_name,
        c.county_area_code as county_code,
        c.county_name,
        cast(v.numerator as bigint) as numerator,
        cast(v.denominator as bigint) as denominator,
        v.rate,
        v.target,
        v.score,
        v.weight,
        v.indicator_id,
        v.indicator_name_zh as indicator_name,
        v.catalog_version,
        -- Delta versions of the silver inputs the engine read: recompute from these to reproduce
        v.input_versions
    from indicator_values as v
    left join org_units as o
        on v.org_code = o.org_code
    left join counties as c
        on o.county_org_code = c.county_org_code
)

select * from final
