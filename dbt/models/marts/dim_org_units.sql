-- every org unit of the city with its township, county and city, and the name to show it by
with org_units as (
    select * from {{ ref('stg_silver__org_units') }}
),

city as (
    select
        org_code as city_org_code,
        regexp_replace(org_name, '卫生健康局$', '') as city_name,
        area_code as city_code
    from org_units
    where org_type = 'city_bureau'
),

final as (
    select
        o.org_code,
        o.org_name,
        -- a county or city bureau stands for its area in every report: shown by the area's name
        case when o.org_type = 'county_bureau' then o.county_name
             when o.org_type = 'city_bureau' then c.city_name
             else o.org_name
        end as display_name,
        o.org_type,
        o.org_level as tree_level,
        o.parent_org_code,
        o.area_code,
        o.township_org_code,
        o.township_org_name,
        o.county_org_code,
        -- the GB/T 2260 code of the county (a city-level unit's area code is the city's)
        case when o.county_org_code is not null then o.county_area_code end as county_code,
        o.county_name,
        c.city_org_code,
        c.city_code,
        c.city_name
    from org_units as o
    left join city as c
        on true
)

select * from final
