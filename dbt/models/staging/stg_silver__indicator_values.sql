with source as (
    select * from {{ source('silver', 'indicator_values') }}
),

renamed as (
    select
        indicator_id,
        indicator_name_zh,
        domain,
        unit,
        direction,
        period_type,
        period,
        period_start,
        period_end,
        cast(substring(period, 1, 4) as int) as period_year,
        org_level,
        org_code,
        numerator,
        denominator,
        value,
        -- the value under the name the rate marts have always used
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
