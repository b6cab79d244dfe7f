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
        -- 真实性: the share of the value's follow-ups / check-ups without an authenticity flag,
        -- and the score times it (docs/indicators.md)
        authenticity_records,
        authenticity_flagged,
        authenticity_coefficient,
        adjusted_score,
        scoring,
        catalog_version,
        input_versions
    from source
)

select * from renamed
