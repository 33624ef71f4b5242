-- ctsync: replica database setup. An empty database: ctsync creates the tables, its own
-- [ctsync] schema (version records) and the views, procedures and functions.
IF DB_ID(N'testct') IS NULL
    CREATE DATABASE testct;
GO
