with source as (
    select * from {{ source('silver', 'staff_workpoints') }}
),

renamed as (
    select
        period,
        cast(substring(period, 1, 4) as int) as period_year,
        staff_id,
        staff_known,
        org_code,
        township_org_code,
        county_org_code,
        services,
        credited_services,
        voided_services,
        raw_points,
        quality_org_level,
        quality_org_code,
        quality_score_rate,
        quality_indicators,
        quality_coefficient,
        corrected_points,
        catalog_version,
        input_versions
    from source
)

select * from renamed
