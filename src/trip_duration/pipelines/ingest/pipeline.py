from kedro.pipeline import Pipeline, node, pipeline

from trip_duration.pipelines.ingest.nodes import check_schema, filter_rows


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                check_schema,
                inputs=["raw_month", "params:ingest"],
                outputs=["parsed_trips", "schema_report"],
                name="check_schema",
            ),
            node(
                filter_rows,
                inputs=["parsed_trips", "schema_report", "params:ingest"],
                outputs=["validated_trips", "rejected_rows", "rows_report"],
                name="filter_rows",
            ),
        ]
    )
