{#- The columns together identify a row (dbt_utils' test of the same name; the hub is not
    reachable here, so it is vendored as a few lines). -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}
select {{ combination_of_columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}
