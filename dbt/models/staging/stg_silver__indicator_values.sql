with source as (
    select * from {{ source('silver', 'indicator_values') }}
),

renamed as (
    select
        indicator_id,
        indicator_name_zh,
        cast(period as int) as period_year,
        org_level,
        org_code,
        numerator,
        denominator,
        value as rate,
        target,
        score,
        weight,
        scoring,
        catalog_version,
        input_versions
    from source
)

select * from renamed
