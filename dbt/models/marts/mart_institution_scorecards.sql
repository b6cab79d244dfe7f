-- 绩效考核得分: per institution (or township) and year, every scored indicator's score and the
-- total on a 100-point scale
with scores as (
    select * from {{ ref('int_indicator_scores') }}
),

org_units as (
    select * from {{ ref('dim_org_units') }}
),

totals as (
    select
        period_year,
        org_level,
        org_code,
        sum(score) as score_sum,
        sum(case when is_scored then weight end) as weight_sum,
        count(score) as indicators_scored,
        count(*) - count(score) as indicators_without_value,
        -- the detail behind the total, ordered by indicator_id
        sort_array(collect_list(struct(indicator_id, indicator_name, value, target, score, weight)))
            as indicator_scores,
        max(catalog_version) as catalog_version
    from scores
    group by period_year, org_level, org_code
),

with_total as (
    select
        *,
        -- only indicators with a value count: Σ score ÷ Σ weight of those, on a 100-point scale
        round(score_sum / weight_sum * 100, 1) as total_score
    from totals
),

final as (
    select
        t.period_year,
        t.org_level,
        t.org_code,
        o.display_name as org_name,
        o.org_type,
        o.township_org_code,
        o.county_org_code,
        o.county_code,
        o.county_name,
        t.total_score,
        case when t.total_score >= 90 then '优秀'
             when t.total_score >= 80 then '良好'
             when t.total_score >= 60 then '合格'
             when t.total_score is not null then '不合格'
        end as grade,
        t.indicators_scored,
        t.indicators_without_value,
        t.score_sum,
        t.weight_sum,
        t.indicator_scores,
        t.catalog_version
    from with_total as t
    left join org_units as o
        on t.org_code = o.org_code
)

select * from final
