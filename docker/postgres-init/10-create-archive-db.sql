-- Runs once, when the PostgreSQL data volume is first initialised: the image
-- creates POSTGRES_DB (`source`); this adds the service's own `archive` database
-- (owned by POSTGRES_USER, who runs this script).
CREATE DATABASE archive;
