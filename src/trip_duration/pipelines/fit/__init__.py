from trip_duration.pipelines.fit.pipeline import create_pipeline

__all__ = ["create_pipeline"]
