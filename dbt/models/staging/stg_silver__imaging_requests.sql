select
    request_id,
    person_id,
    org_code,
    township_org_code,
    county_org_code,
    reading_org_code,
    doctor_id,
    accession_no,
    modality,
    body_part,
    requested_at,
    images_received_at
from {{ source('silver', 'imaging_requests') }}
