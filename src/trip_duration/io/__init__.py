"""The only modules that talk to S3 and MLflow. Pipelines reach them through the Kedro catalog."""
