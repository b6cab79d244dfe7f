with source as (
    select * from {{ source('silver', 'staff') }}
),

renamed as (
    select
        staff_id,
        org_code,
        township_org_code,
        county_org_code,
        sex,
        role,
        title_zh,
        team_id,
        hired_date
    from source
)

select * from renamed
