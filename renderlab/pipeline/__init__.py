"""The render DAG's task code, settings, notifications, the Job contract and its backends: runs in Airflow.

Deployed with dags/ as the Airflow bundle; never copied into an image."""
