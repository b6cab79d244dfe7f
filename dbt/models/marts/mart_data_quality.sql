-- 数据质量: the DQ scorecard per institution and month, and rolled up per township, county and
-- city (rates weighted by records: the sum of passing records over the sum of records)
with scorecard as (
    select * from {{ ref('stg_silver__dq_scorecard') }}
),

org_units as (
    select * from {{ ref('dim_org_units') }}
),

-- each institution's month once per level it counts at (a county hospital has no township,
-- the city hospital counts for the city only)
by_level as (
    select
        l.org_level,
        l.level_org_code as org_code,
        c.month,
        c.records,
        c.complete_records,
        c.timeliness_records,
        c.timely_records,
        c.conformant_records,
        c.authentic_records,
        c.authenticity_flags
    from scorecard as c
    left join org_units as o
        on c.org_code = o.org_code
    lateral view stack(4,
        'institution', c.org_code,
        'township', o.township_org_code,
        'county', o.county_org_code,
        'city', o.city_org_code) l as org_level, level_org_code
    where l.level_org_code is not null
),

summed as (
    select
        org_level,
        org_code,
        month,
        count(*) as institutions,
        sum(records) as records,
        sum(complete_records) as complete_records,
        sum(timeliness_records) as timeliness_records,
        sum(timely_records) as timely_records,
        sum(conformant_records) as conformant_records,
        sum(authentic_records) as authentic_records,
        sum(authenticity_flags) as authenticity_flags
    from by_level
    group by org_level, org_code, month
),

rates as (
    select
        *,
        complete_records / records as completeness,
        -- timeliness applies only to records uploaded on their own
        case when timeliness_records > 0 then timely_records / timeliness_records end as timeliness,
        conformant_records / records as conformance,
        authentic_records / records as authenticity
    from summed
),

final as (
    select
        r.org_level,
        r.org_code,
        o.display_name as org_name,
        o.org_type,
        o.township_org_code,
        o.county_org_code,
        o.county_name,
        r.month,
        r.institutions,
        r.records,
        r.complete_records,
        r.timeliness_records,
        r.timely_records,
        r.conformant_records,
        r.authentic_records,
        r.authenticity_flags,
        r.completeness,
        r.timeliness,
        r.conformance,
        r.authenticity,
        -- as the scorecard: the mean of the rates that apply, × 100
        round(100 * (completeness + coalesce(timeliness, 0) + conformance + authenticity)
              / (case when timeliness is null then 3 else 4 end), 1) as score
    from rates as r
    left join org_units as o
        on r.org_code = o.org_code
)

select * from final
