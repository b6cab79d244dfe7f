with source as (
    select * from {{ source('silver', 'indicator_definitions') }}
),

renamed as (
    select
        indicator_id,
        name_zh as indicator_name_zh,
        name_en as indicator_name_en,
        domain,
        unit,
        direction,
        numerator_zh,
        denominator_zh,
        target,
        scoring,
        weight,
        -- comma-separated lists in silver
        levels,
        periods,
        disaggregations,
        age_bands,
        effective_from,
        effective_to,
        source as definition_source,
        -- records, estimate (adults × prevalence) or census: the last two let a rate pass 1
        denominator_basis,
        catalog_version
    from source
)

select * from renamed
