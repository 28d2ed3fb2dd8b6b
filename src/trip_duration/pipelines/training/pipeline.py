from kedro.pipeline import Pipeline, node, pipeline

from trip_duration.pipelines.training.nodes import (
    apply_gate,
    build_candidate,
    decide_promotion,
    evaluate,
    promotion_report,
    score_champion,
    train_baseline,
    train_model,
)


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(train_baseline, "train_trips", "baseline_model", name="train_baseline"),
            node(train_model, ["train_trips", "params:training"], "candidate_model", name="train_model"),
            node(evaluate, ["baseline_model", "candidate_model", "valid_trips"], "validation_metrics", name="evaluate"),
            node(score_champion, ["champion_for_training", "valid_trips"], "champion_score", name="score_champion"),
            node(
                decide_promotion,
                ["validation_metrics", "champion_score", "params:training"],
                "promotion_decision",
                name="decide_promotion",
            ),
            node(
                build_candidate,
                [
                    "candidate_model",
                    "validation_metrics",
                    "promotion_decision",
                    "train_trips",
                    "valid_trips",
                    "params:training",
                ],
                "registered_model",
                name="register_model",
            ),
            node(apply_gate, ["registered_model", "promotion_decision"], "promotion", name="apply_gate"),
            node(
                promotion_report,
                ["registered_model", "promotion", "promotion_decision", "validation_metrics"],
                "promotion_report",
                name="report_promotion",
            ),
        ]
    )
