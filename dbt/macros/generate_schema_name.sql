{#- Schemas are the lake's layers: a model configured with +schema: staging goes to `staging`,
    everything else to the target schema (gold) — no "<target>_<custom>" prefixing. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name | trim if custom_schema_name else target.schema }}
{%- endmacro %}
