-- every staff member who works in the city's institutions or earned work points: the register's
-- attributes (never the name: it stays in bronze) and the institution, township and county to show
-- them under. A staff member seen only in service records (the legacy county delivers no staff
-- register) is there too, at the institution of their records, with in_register = false.
with staff as (
    select * from {{ ref('stg_silver__staff') }}
),

workpoints as (
    select * from {{ ref('stg_silver__staff_workpoints') }}
),

org_units as (
    select * from {{ ref('dim_org_units') }}
),

unregistered as (
    select
        staff_id,
        min(org_code) as org_code
    from workpoints
    where not staff_known
    group by staff_id
),

everyone as (
    select staff_id, org_code, sex, role, title_zh, team_id, hired_date, true as in_register
    from staff
    union all
    select u.staff_id, u.org_code, null, null, null, null, cast(null as date), false
    from unregistered as u
    left anti join staff as s
        on u.staff_id = s.staff_id
),

final as (
    select
        e.staff_id,
        e.in_register,
        e.role,
        case e.role when 'doctor' then '医生'
                    when 'nurse' then '护士'
                    when 'public_health' then '公共卫生人员'
                    else '未登记'
        end as role_zh,
        e.title_zh,
        case e.sex when '1' then '男' when '2' then '女' end as sex_zh,
        e.team_id,
        e.hired_date,
        e.org_code,
        o.display_name as org_name,
        o.org_type,
        o.township_org_code,
        o.township_org_name,
        o.county_org_code,
        o.county_name
    from everyone as e
    left join org_units as o
        on e.org_code = o.org_code
)

select * from final
