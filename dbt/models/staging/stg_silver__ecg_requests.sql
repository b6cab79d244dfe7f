select
    request_id,
    person_id,
    org_code,
    township_org_code,
    county_org_code,
    reading_org_code,
    doctor_id,
    requested_at,
    recorded_at,
    file_format
from {{ source('silver', 'ecg_requests') }}
