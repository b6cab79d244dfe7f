-- 工分: per staff member and month, the points earned per service item, the quality coefficient
-- and the corrected points, with each one's share of their institution's corrected points that
-- month (performance pay is allocated in proportion to it)
with workpoints as (
    select * from {{ ref('stg_silver__staff_workpoints') }}
),

records as (
    select * from {{ ref('stg_silver__staff_workpoint_records') }}
),

staff as (
    select * from {{ ref('dim_staff') }}
),

items as (
    select
        period,
        staff_id,
        -- the detail behind the raw points, ordered by item_id
        sort_array(collect_list(struct(item_id, services, credited_services, credited_points))) as item_points
    from (
        select
            period,
            staff_id,
            item_id,
            count(*) as services,
            sum(cast(credited as int)) as credited_services,
            round(sum(credited_points), 6) as credited_points
        from records
        where staff_id is not null
        group by period, staff_id, item_id
    ) as per_item
    group by period, staff_id
),

with_share as (
    select
        w.*,
        sum(w.corrected_points) over (partition by w.period, w.org_code) as org_corrected_points
    from workpoints as w
),

final as (
    select
        w.period,
        w.period_year,
        w.staff_id,
        s.in_register,
        s.role_zh,
        s.title_zh,
        s.team_id,
        w.org_code,
        s.org_name,
        s.org_type,
        w.township_org_code,
        s.township_org_name,
        w.county_org_code,
        s.county_name,
        w.services,
        w.credited_services,
        w.voided_services,
        w.raw_points,
        w.quality_org_level,
        w.quality_org_code,
        w.quality_score_rate,
        w.quality_indicators,
        w.quality_coefficient,
        w.corrected_points,
        case when w.org_corrected_points > 0
             then round(w.corrected_points / w.org_corrected_points, 6)
        end as org_points_share,
        i.item_points,
        w.catalog_version
    from with_share as w
    left join staff as s
        on w.staff_id = s.staff_id
    left join items as i
        on w.period = i.period and w.staff_id = i.staff_id
)

select * from final
