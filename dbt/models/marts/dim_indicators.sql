-- the indicator catalogue: what every indicator means (口径 in Chinese), its target, scoring and
-- weight, where and how often it is computed, and how it is disaggregated
with definitions as (
    select * from {{ ref('stg_silver__indicator_definitions') }}
),

final as (
    select
        indicator_id,
        indicator_name_zh,
        indicator_name_en,
        domain,
        case domain when 'basic_public_health' then '国家基本公共卫生服务'
                    when 'medical_services' then '医疗服务'
                    else domain
        end as domain_zh,
        unit,
        direction,
        numerator_zh,
        denominator_zh,
        target,
        scoring,
        weight,
        levels,
        periods,
        disaggregations,
        age_bands,
        effective_from,
        effective_to,
        definition_source,
        denominator_basis,
        catalog_version
    from definitions
)

select * from final
