with source as (
    select * from {{ source('silver', 'indicator_members') }}
),

renamed as (
    select
        indicator_id,
        period_type,
        period,
        member_id,
        member_type,
        person_id,
        member_org_code,
        in_denominator,
        in_numerator,
        numerator_value,
        denominator_value,
        reason,
        evidence
    from source
)

select * from renamed
