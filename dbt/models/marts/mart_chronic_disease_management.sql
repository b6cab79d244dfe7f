{#- the six chronic-disease indicators, side by side: hypertension then diabetes. The 管理率's
    denominator is an estimate (Σ adult residents × prevalence of their age band), not a count -#}
{%- set indicators = ['htn_mgmt_rate', 'htn_standard_mgmt_rate', 'htn_bp_control_rate',
                      'dm_mgmt_rate', 'dm_standard_mgmt_rate', 'dm_glucose_control_rate'] -%}
{%- set estimated_denominators = ['htn_mgmt_rate', 'dm_mgmt_rate'] -%}
-- 慢病管理: per township, county and city and year, the hypertension and diabetes 管理率,
-- 规范管理率 and 控制率 with their numerators and denominators
with indicator_values as (
    select * from {{ ref('fct_indicator_values') }}
    where period_type = 'year'
        and org_level in ('township', 'county', 'city')
        and indicator_id in ('{{ indicators | join("', '") }}')
),

final as (
    select
        period_year,
        org_level,
        org_code,
        max(org_name) as org_name,
        max(county_code) as county_code,
        max(county_name) as county_name,
        {%- for ind in indicators %}
        max(case when indicator_id = '{{ ind }}' then value end) as {{ ind }},
        cast(max(case when indicator_id = '{{ ind }}' then numerator end) as bigint) as {{ ind }}_numerator,
        {%- if ind in estimated_denominators %}
        max(case when indicator_id = '{{ ind }}' then denominator end) as {{ ind }}_denominator,
        {%- else %}
        cast(max(case when indicator_id = '{{ ind }}' then denominator end) as bigint) as {{ ind }}_denominator,
        {%- endif %}
        {%- endfor %}
        max(catalog_version) as catalog_version
    from indicator_values
    group by period_year, org_level, org_code
)

select * from final
