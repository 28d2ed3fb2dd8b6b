from kedro.pipeline import Pipeline, node, pipeline

from trip_duration.pipelines.ingest.nodes import check_schema, ingest_month, require_accepted


def create_pipeline(**kwargs) -> Pipeline:
    """check_schema -> ingest_month -> the outcome committed as a whole (outcome.json written last,
    the old outcome removed) -> require_accepted fails the run when the month was refused."""
    return pipeline(
        [
            node(
                check_schema,
                inputs=["raw_month", "params:ingest"],
                outputs=["parsed_trips", "schema_report"],
                name="check_schema",
            ),
            node(
                ingest_month,
                inputs=["parsed_trips", "schema_report", "params:ingest"],
                outputs="ingest_outcome",
                name="filter_rows",
            ),
            node(require_accepted, inputs="ingest_outcome", outputs=None, name="require_accepted"),
        ]
    )
