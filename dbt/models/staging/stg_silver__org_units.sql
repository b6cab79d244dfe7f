with source as (
    select * from {{ source('silver', 'org_units') }}
),

renamed as (
    select
        org_code,
        org_name,
        org_type,
        level as org_level,
        township_org_code,
        county_org_code,
        county_area_code,
        county_name
    from source
)

select * from renamed
