with source as (
    select * from {{ source('silver', 'org_units') }}
),

renamed as (
    select
        org_code,
        org_name,
        org_type,
        level as org_level,
        parent_code as parent_org_code,
        area_code,
        township_org_code,
        township_org_name,
        county_org_code,
        county_area_code,
        county_name
    from source
)

select * from renamed
