-- 分组指标: every disaggregated indicator's value per period and org unit, split by the sex and
-- the age band of its members' persons (age at the end of the period; the bands' lower bounds
-- are the catalogue's age_bands). A member without a known person, sex or birth date is in the
-- category 未知, so the categories of a dimension add up to the published value.
with members as (
    select * from {{ ref('stg_silver__indicator_members') }}
),

definitions as (
    select * from {{ ref('stg_silver__indicator_definitions') }}
    where disaggregations is not null and disaggregations <> ''
),

persons as (
    select * from {{ ref('stg_silver__persons') }}
),

org_units as (
    select * from {{ ref('dim_org_units') }}
),

period_ends as (
    select distinct indicator_id, period, period_end
    from {{ ref('stg_silver__indicator_values') }}
),

described as (
    select
        m.indicator_id,
        m.period_type,
        m.period,
        m.member_org_code,
        m.in_numerator,
        m.in_denominator,
        m.numerator_value,
        m.denominator_value,
        d.unit,
        split(d.disaggregations, ',') as dimensions,
        d.levels,
        transform(split(d.age_bands, ','), b -> cast(b as int)) as bands,
        p.sex,
        cast(floor(months_between(e.period_end, p.birth_date) / 12) as int) as age
    from members as m
    inner join definitions as d
        on m.indicator_id = d.indicator_id
    inner join period_ends as e
        on m.indicator_id = e.indicator_id and m.period = e.period
    left join persons as p
        on m.person_id = p.person_id
),

categorised as (
    select
        *,
        try_element_at(filter(bands, b -> b <= age), -1) as band_lower,
        try_element_at(filter(bands, b -> b > age), 1) as band_next
    from described
),

-- one row per member and dimension the indicator is split by
by_dimension as (
    select c.*, x.dimension, x.category, x.category_order
    from categorised as c
    lateral view inline(array(
        named_struct(
            'dimension', 'sex',
            'category', case c.sex when '1' then '男' when '2' then '女' else '未知' end,
            'category_order', case c.sex when '1' then 1 when '2' then 2 else 9 end
        ),
        named_struct(
            'dimension', 'age_band',
            'category', case when c.band_lower is null then '未知'
                             when c.band_next is null then concat(c.band_lower, '岁及以上')
                             when c.band_next = c.band_lower + 1 then concat(c.band_lower, '岁')
                             else concat(c.band_lower, '～', c.band_next - 1, '岁')
                        end,
            'category_order', coalesce(c.band_lower, 999)
        )
    )) x
    where array_contains(c.dimensions, x.dimension)
),

-- a village clinic rolls up to its township centre, a township centre to its county, a county to
-- the city, at the levels the indicator is computed for (as the engine's values): one pass, each
-- member row once per level
rolled_up as (
    select b.*, u.org_level, u.unit_code
    from by_dimension as b
    inner join org_units as o
        on b.member_org_code = o.org_code
    lateral view inline(array(
        named_struct('org_level', 'institution', 'unit_code', o.org_code),
        named_struct('org_level', 'township', 'unit_code', o.township_org_code),
        named_struct('org_level', 'county', 'unit_code', o.county_org_code),
        named_struct('org_level', 'city', 'unit_code', o.city_org_code)
    )) u
    where array_contains(split(b.levels, ','), u.org_level) and u.unit_code is not null
),

summed as (
    select
        indicator_id,
        period_type,
        period,
        org_level,
        unit_code as org_code,
        dimension,
        category,
        min(category_order) as category_order,
        max(unit) as unit,
        count(*) as members,
        round(sum(case when in_numerator then numerator_value else 0 end), 6) as numerator,
        round(sum(case when in_denominator then denominator_value end), 6) as denominator
    from rolled_up
    group by indicator_id, period_type, period, org_level, unit_code, dimension, category
),

final as (
    select
        s.indicator_id,
        d.indicator_name_zh,
        s.period_type,
        s.period,
        s.org_level,
        s.org_code,
        s.dimension,
        case s.dimension when 'sex' then '性别' else '年龄组' end as dimension_zh,
        s.category,
        s.category_order,
        s.members,
        s.numerator,
        case when s.unit <> 'count' then s.denominator end as denominator,
        case when s.unit = 'count' then s.numerator
             when s.denominator > 0 then s.numerator / s.denominator
        end as value
    from summed as s
    inner join definitions as d
        on s.indicator_id = d.indicator_id
)

select * from final
