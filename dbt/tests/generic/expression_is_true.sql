{#- Every row satisfies the SQL expression (an invariant such as numerator <= denominator). -#}
{% test expression_is_true(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}
