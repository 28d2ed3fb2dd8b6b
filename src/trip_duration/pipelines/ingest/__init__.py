from trip_duration.pipelines.ingest.pipeline import create_pipeline

__all__ = ["create_pipeline"]
