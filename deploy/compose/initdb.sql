-- Runs once, when the PostgreSQL volume is new: MLflow's runs/registry and its basic-auth users get databases of their own
-- beside dspyopt's store (all owned by POSTGRES_USER).
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
