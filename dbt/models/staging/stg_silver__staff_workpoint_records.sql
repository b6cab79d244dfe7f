with source as (
    select * from {{ source('silver', 'staff_workpoint_records') }}
),

renamed as (
    select
        item_id,
        record_id,
        period,
        staff_id,
        org_code,
        person_id,
        service_date,
        points,
        credited,
        credited_points,
        void_flags,
        reason
    from source
)

select * from renamed
