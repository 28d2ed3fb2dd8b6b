from kedro.pipeline import Pipeline, node, pipeline

from trip_duration.pipelines.inference.nodes import score_batch, summarize


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(score_batch, ["champion_model", "batch_trips"], "predictions", name="score_batch"),
            node(summarize, "predictions", "inference_summary", name="summarize"),
        ]
    )
