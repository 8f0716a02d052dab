"""The lab config and what is derived from it: runs on the workstation (check-config, inventory, secrets).

Never copied into an image or the Airflow bundle."""
