with source as (
    select * from {{ source('silver', 'dq_scorecard') }}
),

renamed as (
    select
        org_code,
        month,
        org_name,
        org_type,
        township_org_code,
        county_org_code,
        records,
        complete_records,
        timeliness_records,
        timely_records,
        conformant_records,
        authentic_records,
        authenticity_flags,
        completeness,
        timeliness,
        conformance,
        authenticity,
        score
    from source
)

select * from renamed
