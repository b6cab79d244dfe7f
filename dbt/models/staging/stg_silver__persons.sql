-- the EMPI's persons, only what disaggregations need (no identifiers are in silver.persons)
with source as (
    select * from {{ source('silver', 'persons') }}
),

renamed as (
    select
        person_id,
        sex,
        birth_date
    from source
)

select * from renamed
