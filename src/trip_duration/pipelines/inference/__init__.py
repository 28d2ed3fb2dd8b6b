from trip_duration.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
